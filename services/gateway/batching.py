"""Natural batching of order placements: concurrent POSTs share one RPC call and one transaction.

No request waits for a batch to fill: the first one goes out at once, alone; requests that arrive while
calls are in flight are sent together as the next call. At low load every batch has one order (no added
latency); under load batches grow by themselves, which is how placement keeps up with many clients.

Each placement keeps its own request's budget (``budget.py``): it waits for its answer (its place in the
queue, a free call slot and the call itself) at most until the budget ends, then answers 504. Without that,
a placement queued behind calls to a hung service waited for them to time out and then for its own call:
two timeouts. A placement that gave up is left out of any batch not yet sent.

Two calls in flight, not more: at 32 clients, 2 in flight placed more orders per second with a lower p99
than 4 or 8 (bench/RESULTS.md, the gateway hot path section): fewer, larger batches cost the orders service
and Postgres less per order, and the second slot keeps a batch forming while one is in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any, Protocol

from services.gateway.budget import Budget, current_budget
from services.gateway.context import current_request_id, request_id_var
from services.gateway.rpc import ServiceTimeout, rebuild_error, service_timeout
from services.gateway.views import Rendered


class _Rpc(Protocol):
    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        ...


@dataclass
class _Placement:
    request: dict[str, Any]
    future: asyncio.Future[Any]
    budget: Budget
    request_id: str


class PlacementBatcher:
    def __init__(self, rpc: _Rpc, *, max_batch: int = 64, max_in_flight: int = 2, timeout: float = 10.0) -> None:
        self.rpc = rpc
        self.max_batch = max_batch
        self.timeout = timeout
        self._queue: asyncio.Queue[_Placement] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.placed = 0

    async def place(self, command: dict[str, Any], actor: dict[str, Any], idempotency_key: str | None) -> Any:
        """The orders service's answer for this placement; 504 when the request's budget runs out first."""
        if self._task is None:
            # A context of its own: the loop must not carry the first request's id and budget forever.
            self._task = asyncio.create_task(self._run(), name="placement-batcher", context=contextvars.Context())
        budget = current_budget() or Budget(self.timeout)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        request = {"command": command, "actor": actor, "idempotency_key": idempotency_key}
        self._queue.put_nowait(_Placement(request, future, budget, current_request_id()))
        try:
            async with asyncio.timeout(budget.remaining()):
                return await future  # on timeout the future is cancelled: a batch not yet sent skips it
        except (TimeoutError, ServiceTimeout):
            raise service_timeout("orders", budget) from None

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first.future.done():  # gave up while queued
                continue
            await self._slots.acquire()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [placement for placement in batch if not placement.future.done()]
            if not batch:
                self._slots.release()
                continue
            asyncio.create_task(self._send(batch))

    async def _send(self, batch: list[_Placement]) -> None:
        request_id_var.set(batch[0].request_id)  # this task's own context: the call carries a caller's id
        try:
            # Nobody waits longer than the last caller's budget, so neither does the call.
            timeout = max(0.001, max(placement.budget.remaining() for placement in batch))
            # validated: each command is PlaceOrder's dump (the route validated it); as_json: each answer comes
            # serialized by the service and goes to the client as is (``views.Rendered``).
            answers = await self.rpc.call("orders", "place_orders", requests=[p.request for p in batch],
                                          validated=True, as_json=True, timeout=timeout)
            self.batches += 1
            self.placed += len(batch)
            for placement, answer in zip(batch, answers, strict=True):
                if placement.future.done():
                    continue
                if "error" in answer:
                    placement.future.set_exception(rebuild_error(answer["error"], "orders", "place_orders"))
                elif "result_json" in answer:
                    placement.future.set_result(Rendered(answer["result_json"].encode(), answer.get("id")))
                else:
                    placement.future.set_result(answer["result"])
        except BaseException as exc:  # noqa: BLE001 - the whole call failed (503/504): every caller hears it
            for placement in batch:
                if not placement.future.done():
                    placement.future.set_exception(exc)
        finally:
            self._slots.release()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
