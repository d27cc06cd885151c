"""Concurrent placements share RPC calls; a lone placement is sent at once; one bad order fails alone; a
placement never waits longer than its request's budget, even queued behind calls to a hung service."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from services.gateway.batching import PlacementBatcher
from services.gateway.budget import Budget, use_budget
from services.gateway.rpc import ServiceTimeout
from services.gateway.views import Rendered
from shared.errors import InvalidRequest

pytestmark = pytest.mark.unit


class SlowOrders:
    """Answers ``place_orders`` after a delay, as a busy orders service would; item ``bad`` is refused."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kw: Any) -> Any:
        assert (service, method) == ("orders", "place_orders")
        self.batches.append(len(kw["requests"]))
        await asyncio.sleep(0.05)
        return [
            {"error": {"exc_type": "InvalidRequest", "exc_args": ["bad order", {"errors": [{"field": "items"}]}]}}
            if r["command"]["name"] == "bad"
            else {"result": {"placed": r["command"]["name"]}}
            for r in kw["requests"]
        ]


def test_concurrent_placements_share_calls_and_errors_stay_with_their_order() -> None:
    async def scenario() -> tuple[list[Any], list[int], Any]:
        orders = SlowOrders()
        batcher = PlacementBatcher(orders, max_batch=64, max_in_flight=2)
        lone = await batcher.place({"name": "first"}, {}, None)  # alone: sent at once, batch of one
        names = [f"o{i}" for i in range(40)] + ["bad"]
        results = await asyncio.gather(*(batcher.place({"name": n}, {}, None) for n in names),
                                       return_exceptions=True)
        await batcher.close()
        return results, orders.batches, lone

    results, batches, lone = asyncio.run(scenario())
    assert lone == {"placed": "first"} and batches[0] == 1
    assert sum(batches) == 42 and len(batches) <= 4  # 41 concurrent placements in a handful of calls
    assert results[:40] == [{"placed": f"o{i}"} for i in range(40)]
    assert isinstance(results[40], InvalidRequest) and results[40].extra["errors"] == [{"field": "items"}]


class HungOrders:
    """An orders service that took the calls and hangs: each call ends at its timeout, with a 504."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kw: Any) -> Any:
        self.sent.append([r["command"]["name"] for r in kw["requests"]])
        await asyncio.sleep(10.0 if timeout is None else timeout)
        raise ServiceTimeout("The orders service did not answer.", service="orders")


def test_a_placement_queued_behind_a_hung_call_answers_504_when_its_own_budget_ends_and_is_never_sent() -> None:
    orders = HungOrders()
    batcher = PlacementBatcher(orders, max_in_flight=1)

    async def place(name: str, limit: float) -> tuple[float, BaseException | None]:
        use_budget(Budget(limit))  # what ``state.gateway(request)`` does for an HTTP request
        started = time.monotonic()
        try:
            await batcher.place({"name": name}, {}, None)
            return time.monotonic() - started, None
        except ServiceTimeout as exc:
            return time.monotonic() - started, exc

    async def scenario() -> list[tuple[float, BaseException | None]]:
        first = asyncio.ensure_future(place("first", 0.6))  # takes the only call slot and hangs
        await asyncio.sleep(0.05)
        second = await place("second", 0.2)  # queued behind it
        results = [second, await first]
        results.append(await place("third", 0.2))  # after the slot is free again: sent at once, alone
        await batcher.close()
        return results

    (second_s, second), (first_s, first), (third_s, third) = asyncio.run(scenario())
    assert isinstance(second, ServiceTimeout) and second.status == 504
    assert second_s < 0.4, f"waited {second_s:.2f}s on a 0.2s budget: it waited for the call ahead of it"
    assert "gave up after 0.2s" in str(second.detail) and second.extra["timeout_seconds"] == 0.2
    assert isinstance(first, ServiceTimeout) and "gave up after 0.6s" in str(first.detail)
    assert isinstance(third, ServiceTimeout) and third_s < 0.4
    assert orders.sent == [["first"], ["third"]]  # the placement that gave up while queued was never sent


class JsonOrders:
    """The orders service as the gateway calls it: commands already validated, answers serialized by it."""

    def __init__(self) -> None:
        self.options: list[dict[str, Any]] = []

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kw: Any) -> Any:
        self.options.append({k: v for k, v in kw.items() if k != "requests"})
        return [{"result_json": '{"id":"o-1","number":1001}', "id": "o-1"} for _ in kw["requests"]]


def test_the_service_serialized_answer_is_passed_on_as_is_and_the_call_says_the_commands_are_validated() -> None:
    orders = JsonOrders()

    async def scenario() -> Any:
        batcher = PlacementBatcher(orders)
        try:
            return await batcher.place({"name": "first"}, {}, None)
        finally:
            await batcher.close()

    answer = asyncio.run(scenario())
    assert isinstance(answer, Rendered)
    assert answer.body == b'{"id":"o-1","number":1001}' and answer.id == "o-1"
    assert answer.data() == {"id": "o-1", "number": 1001}  # parsed only where a copy is stored (Idempotency-Key)
    assert orders.options == [{"validated": True, "as_json": True}]
