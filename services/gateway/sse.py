"""The live staff alert stream (``GET /api/v1/alerts/stream``) as server-sent events.

The gateway keeps no state: the stream is a loop that asks ``notifications.alerts_after(last_id, kinds)``
every ``POLL_SECONDS`` and writes each new alert as one event::

    id: 42
    event: new_order
    data: {"id": 17, "position": 42, "kind": "new_order", ...}      (the contract's AlertView)

``id:`` is the alert's ``position`` in one total order (the notifications service gives positions in the
order alerts become visible, never leaving a gap behind what a reader saw): a client that reconnects with
``Last-Event-ID: 42`` (EventSource does it by itself) gets every alert after 42 and none before it, from any gateway
process. A comment line ``: keep-alive`` is written when nothing was written for ``HEARTBEAT_SECONDS`` (proxies and
load balancers close idle connections), and the loop ends when the client goes away. If notifications stops
answering in the middle of a stream, the stream stays open and asks again (the alerts are in the service's table;
nothing is lost meanwhile).

The request's time budget (``budget.py``) bounds one request's waits; a stream lives for hours, so each poll gets a
budget of its own instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import Request

from services.gateway.budget import Budget, use_budget
from services.gateway.rpc import RemoteServiceError, ServiceUnavailable
from services.gateway.views import view
from services.notifications.contracts.schemas import AlertList
from shared.errors import DomainError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 2000  # EventSource waits this long before it reconnects
PAGE = 100
POLL_TIMEOUT_SECONDS = 5.0

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    "Connection": "keep-alive",
}


class _Rpc(Protocol):
    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Any: ...


class AlertPoller:
    """Pages of alerts after the last one seen. ``after=-1``: start after the newest alert (a new client wants
    what happens from now on, not the whole history)."""

    def __init__(self, rpc: _Rpc, *, kinds: list[str] | None, after: int) -> None:
        self.rpc = rpc
        self.kinds = kinds
        self.last_id = after

    async def _page(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        use_budget(Budget(POLL_TIMEOUT_SECONDS))
        result = await self.rpc.call("notifications", "alerts_after", after_id=after_id, kinds=self.kinds,
                                     limit=limit, timeout=POLL_TIMEOUT_SECONDS)
        items: list[dict[str, Any]] = view(AlertList, result, "notifications.alerts_after")["items"]
        return items

    async def start(self) -> list[dict[str, Any]]:
        """The first page (errors propagate: the client gets a problem document instead of a stream)."""
        if self.last_id < 0:
            self.last_id = await self._newest()
            return []
        return self._advance(await self._page(self.last_id, PAGE))

    async def _newest(self) -> int:
        """The position of the newest alert of any kind: the stream's start when no position is given.

        ``alerts_after`` pages forward only, so the newest position is found by probing with pages of one alert:
        doubling until nothing is after the probe, then halving (about 2 x log2(newest position) calls, ~40 for a
        million alerts, once per connection without a position; a reconnect names its position)."""
        saved, self.kinds = self.kinds, None
        try:
            known, probe = 0, 1  # an alert with id `known` exists (0: none known); is anything after `probe`?
            while True:
                items = await self._page(probe, 1)
                if not items:
                    break
                known = int(items[0]["position"])
                probe = known * 2
            low, high = known, probe  # an alert `low` exists (or low is 0); none is after `high`
            while low < high:
                middle = (low + high) // 2
                items = await self._page(middle, 1)
                if items:
                    low = int(items[0]["position"])  # > middle
                else:
                    high = middle
            return low
        finally:
            self.kinds = saved

    async def next(self) -> list[dict[str, Any]]:
        return self._advance(await self._page(self.last_id, PAGE))

    def _advance(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = sorted((a for a in items if int(a["position"]) > self.last_id), key=lambda a: int(a["position"]))
        if fresh:
            self.last_id = int(fresh[-1]["position"])
        return fresh


def event(alert: dict[str, Any]) -> str:
    """One alert as a server-sent event (``data`` is one line of JSON: no newline can break the framing)."""
    data = json.dumps(alert, separators=(",", ":"), ensure_ascii=False)
    return f"id: {int(alert['position'])}\nevent: {alert['kind']}\ndata: {data}\n\n"


async def alert_events(request: Request, poller: AlertPoller, first: list[dict[str, Any]]) -> AsyncIterator[str]:
    """The stream's text: ``retry:``, the first page, then new alerts as they come, keep-alives between."""
    loop = asyncio.get_running_loop()
    yield f"retry: {RETRY_MILLISECONDS}\n: resuming after position {poller.last_id}\n\n"
    for alert in first:
        yield event(alert)
    written = loop.time()
    full = len(first) >= PAGE
    failing = False
    while True:
        if not full:
            await asyncio.sleep(POLL_SECONDS)
        if await request.is_disconnected():
            return
        try:
            items = await poller.next()
            if failing:
                log.info("alert stream: notifications answer again")
            failing = False
        except (ServiceUnavailable, RemoteServiceError, DomainError) as exc:
            if not failing:
                log.warning("alert stream: notifications.alerts_after failed (%s); asking again", exc)
            failing, items = True, []
            await asyncio.sleep(min(HEARTBEAT_SECONDS, max(POLL_SECONDS, 2.0)))
        full = len(items) >= PAGE
        for alert in items:
            yield event(alert)
        if items:
            written = loop.time()
        elif loop.time() - written >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            written = loop.time()
