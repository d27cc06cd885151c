"""The order follows its fulfillment (issue #11): every fulfillment status reported for an order in every stage,
the stages passed through on the way (each in the history, each announced), held orders left alone, and the
out-of-stock hold. The expectations are written out here by hand, not derived from the domain's table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from services.fulfillment.contracts.vocabulary import FulfillmentStatus
from services.orders import document
from services.orders import domain as d
from services.orders.contracts.schemas import OrderQuery, Stage
from services.orders.usecases import views
from tests.unit.test_orders_domain import at_stage, new

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)
F = FulfillmentStatus
S = Stage

LEADS_TO = {F.dispatched: S.processed, F.fulfilled: S.shipped, F.delivered: S.delivered, F.picked_up: S.delivered,
            F.returned: S.returned}  # fmt: skip
"""What the design says; every other status (unfulfilled, the partial ones, canceled) moves no stage."""

PATH = [S.approved, S.processed, S.shipped, S.delivered, S.returned]

SHIPMENT = {
    "shipment_id": str(uuid4()), "number": "1001-S1", "kind": "manual", "shipping_point": "local",
    "status": "shipped", "carrier": "DHL", "service": None, "tracking_number": "TRK1", "tracking_url": None,
    "expected_delivery": "2025-03-05", "lines": [{"line_id": "1", "sku": "TEA-1", "quantity": 3}],
}


def order_in(stage: Stage, held_from: Stage | None = None) -> d.Order:
    return at_stage(stage, held_from)


CASES = [(stage, None, status) for stage in Stage if stage != S.on_hold for status in FulfillmentStatus] + [
    (S.on_hold, held, status) for held in sorted(d.RESUMABLE_STAGES) for status in FulfillmentStatus
]


@pytest.mark.parametrize(("stage", "held", "status"), CASES,
                         ids=[f"{s}{'<' + h if h else ''}:{st}" for s, h, st in CASES])
def test_every_fulfillment_status_from_every_stage(stage: Stage, held: Stage | None, status: FulfillmentStatus) -> None:
    order = order_in(stage, held)
    projected, outcome = d.follow_fulfillment(order, F.unfulfilled, status, [SHIPMENT], NOW)
    assert projected.fulfillment_status == status and projected.shipments == (SHIPMENT,)
    assert projected.stage == order.stage and projected.version == order.version
    target = LEADS_TO.get(status)

    if target is None:
        assert outcome is None, "a partial or unfulfilled status moves nothing and records nothing"
        return
    where = held if stage == S.on_hold else stage
    if where in PATH and PATH.index(where) >= PATH.index(target):
        assert outcome is None, "already there (or past it): nothing happens"
        return
    assert outcome is not None
    new = outcome.order
    assert new.fulfillment_status == status and new.shipments == (SHIPMENT,), "the projection is saved with it"
    if stage in PATH:
        moves = PATH[PATH.index(stage) + 1: PATH.index(target) + 1]
        steps = list(zip([stage, *moves[:-1]], moves, strict=True))
        assert new.stage == target
        assert [(h.from_stage, h.to_stage) for h in outcome.history] == steps, "every stage on the way recorded"
        assert all(h.actor == d.FULFILLMENT and h.action == "stage_changed" for h in outcome.history)
        assert [(e.from_stage, e.to_stage) for e in outcome.events] == steps, "and announced"
        first = order.history_seq + 1
        assert [h.seq for h in outcome.history] == list(range(first, first + len(moves)))
        assert new.version == order.version + len(moves)
    else:
        assert new.stage == stage and new.held_from == order.held_from, "not moved"
        assert outcome.events == []
        [entry] = outcome.history
        assert (entry.action, entry.actor) == ("fulfillment_not_followed", d.FULFILLMENT)
        assert entry.data["fulfillment_status"] == status.value and entry.data["would_move_to"] == target.value
        assert ("on hold" if stage == S.on_hold else stage.value) in (entry.reason or ""), "the history says why"


def test_fulfilled_from_approved_passes_through_processed() -> None:
    order = order_in(S.approved)
    _, outcome = d.follow_fulfillment(order, F.unfulfilled, F.fulfilled, [SHIPMENT], NOW)
    assert outcome is not None
    assert [h.to_stage for h in outcome.history] == [S.processed, S.shipped]
    assert [h.reason for h in outcome.history] == ["fulfillment fulfilled"] * 2


@pytest.mark.parametrize("stage", list(Stage))
def test_out_of_stock_holds_when_the_stage_allows_else_records_it(stage: Stage) -> None:
    order = order_in(stage)
    lines: list[dict[str, Any]] = [{"line_id": "2", "sku": "MUG", "requested": 1, "available": 0}]
    outcome = d.hold_out_of_stock(order, lines, NOW)
    [entry] = outcome.history
    assert entry.actor == d.FULFILLMENT and entry.data["lines"] == lines
    if stage in (S.placed, S.confirmed, S.approved, S.processed):
        assert (outcome.order.stage, outcome.order.held_from) == (S.on_hold, stage)
        assert (entry.action, entry.reason) == ("stage_changed", "out_of_stock")
        [event] = outcome.events
        assert (event.to_stage, event.reason) == (S.on_hold, "out_of_stock")
    else:
        assert outcome.order.stage == stage and outcome.events == []
        assert entry.action == "out_of_stock" and stage.value in (entry.reason or "")


def test_the_table_covers_every_status() -> None:
    assert set(d.STAGE_FOLLOWS) == set(FulfillmentStatus)
    assert {s: t for s, t in d.STAGE_FOLLOWS.items() if t is not None} == LEADS_TO


def test_the_projection_is_stored_and_shown() -> None:
    order = replace(new(), fulfillment_status=F.fulfilled, shipments=(SHIPMENT,))
    assert document.from_json(document.to_json(order)) == order
    old = document.to_doc(new())
    del old["fulfillment_status"], old["shipments"]
    assert document.from_doc(old).fulfillment_status == F.unfulfilled, "documents from before issue #11"
    detail = views.order_detail(order).model_dump(mode="json")
    assert detail["fulfillment_status"] == "fulfilled"
    [shipment] = detail["shipments"]
    assert (shipment["number"], shipment["status"], shipment["tracking_number"]) == ("1001-S1", "shipped", "TRK1")
    assert views.order_summary(order).fulfillment_status == F.fulfilled


def test_the_list_filter_takes_comma_separated_or_repeated_statuses() -> None:
    q = OrderQuery.model_validate({"fulfillment_status": ["unfulfilled,dispatched", "returned"]})
    assert q.fulfillment_status == [F.unfulfilled, F.dispatched, F.returned]
    assert OrderQuery.model_validate(q.model_dump(mode="json")) == q
    with pytest.raises(ValueError):
        OrderQuery.model_validate({"fulfillment_status": "shipped"})  # a shipment status, not an order's
