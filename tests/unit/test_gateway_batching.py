"""Concurrent placements share RPC calls; a lone placement is sent at once; one bad order fails alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.gateway.batching import PlacementBatcher
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
