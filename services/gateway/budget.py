"""How long one HTTP request may wait for the services: the gateway's promise to answer within
``OMS_RPC_TIMEOUT_SECONDS``.

A request may make several RPC calls (payments first look the order up in orders), wait for a placement
batch to leave, or retry while payments catch up with a new order. Giving each of those its own timeout is
how a request in flight when a service died was answered "did not answer within 10s" after 20 s. Instead
the request gets one budget, started the first time a route touches the gateway (``state.gateway``, which
is also where the API key is checked), and every wait inside the request is bounded by what is left of it.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Budget:
    """``limit`` seconds from ``started`` (``time.monotonic()``, the clock asyncio's loop uses)."""

    limit: float
    started: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        return self.started + self.limit

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


_current: ContextVar[Budget | None] = ContextVar("oms_gateway_request_budget", default=None)


def current_budget() -> Budget | None:
    """The budget of the HTTP request being served (None outside a request: a call then has its own)."""
    return _current.get()


def use_budget(budget: Budget | None) -> None:
    _current.set(budget)
