"""The fulfillment use cases in-process against a real Postgres (the carrier is the in-memory fake at its port).

Order events are built as the orders service publishes them (``tests/builders.OrderStream``) and handed to the
fulfillment inbox, which is what its subscriber does; each test uses SKUs of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.fulfillment import usecases as f
from services.fulfillment.contracts.vocabulary import ShipmentStatus
from services.orders.contracts.schemas import Stage
from shared.envelope import Envelope
from shared.errors import DomainError, InvalidRequest, NotAllowedInThisState
from tests.builders import OrderStream, place_order
from tests.conftest import Servers
from tests.fakes import InMemoryCarrier

pytestmark = pytest.mark.integration

STAFF = {"type": "staff", "id": "tester", "name": "Tester"}
ADDRESS = {"line1": "1 Parcel Way", "city": "Berlin", "postal_code": "10115", "country": "DE"}


@pytest.fixture(scope="module")
def db(migrated: dict[str, str], servers: Servers) -> Iterator[Any]:
    from shared.db import Database

    database = Database(servers.database_url, "fulfillment", size=4)
    database.open()
    yield database
    database.close()


@pytest.fixture
def carrier() -> InMemoryCarrier:
    return InMemoryCarrier()


def sku(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def stock(db: Any, code: str, on_hand: int, location: str = "main") -> dict[str, Any]:
    return f.set_stock(db, code, {"location": location, "on_hand": on_hand, "reason": "stock take"}, STAFF)


def level(db: Any, code: str, location: str = "main") -> tuple[int, int]:
    item = f.list_stock(db, sku=code)["items"][0]
    lv = next(x for x in item["locations"] if x["location"] == location)
    return lv["on_hand"], lv["reserved"]


def deliver(db: Any, carrier: Any, stream: OrderStream, *envs: Envelope) -> None:
    for env in envs or stream.envelopes:
        f.handle_order_event(db, carrier, env)


def placed(db: Any, carrier: Any, lines: list[tuple[str, int, str]], *, stage: Stage | None = Stage.approved,
           **kw: Any) -> OrderStream:
    stream = OrderStream.place(place_order(lines=lines, shipping_address=ADDRESS, **kw),
                               number=int(uuid.uuid4().int % 900_000) + 1000)
    deliver(db, carrier, stream)
    if stage is not None:
        stream.move(Stage.confirmed)
        stream.move(stage)
        deliver(db, carrier, stream, *stream.envelopes[1:])
    return stream


def outbox(db: Any, subject: str, event_type: str | None = None) -> list[dict[str, Any]]:
    with db.transaction() as tx:
        rows = tx.execute("SELECT payload FROM outbox WHERE subject = %s ORDER BY id", (subject,)).fetchall()
    envs = [Envelope.model_validate_json(r["payload"]) for r in rows]
    return [e.data for e in envs if event_type is None or e.type == event_type]


def test_placement_reserves_and_a_cancel_releases(db: Any, carrier: InMemoryCarrier) -> None:
    mug, svc = sku("MUG"), sku("GIFTWRAP")  # svc has no stock level: not tracked
    stock(db, mug, 5)
    stream = placed(db, carrier, [(mug, 3, "10.00"), (svc, 1, "2.00")])
    view = f.get_fulfillment(db, stream.order_id)
    assert view["reservation"] == "reserved"
    assert [(ln["stock_tracked"], ln["reserved"]) for ln in view["lines"]] == [(True, 3), (False, 0)]
    assert level(db, mug) == (5, 3)
    assert outbox(db, stream.order_id, "fulfillment.stock_reserved.v1")[0]["lines"] == [
        {"line_id": "1", "sku": mug, "quantity": 3}]
    deliver(db, carrier, stream, stream.move(Stage.cancelled))
    assert level(db, mug) == (5, 0)
    view = f.get_fulfillment(db, stream.order_id)
    assert (view["reservation"], view["status"], view["can_fulfill"]) == ("released", "canceled", False)
    assert "will not be fulfilled" in view["why_not"]
    assert outbox(db, stream.order_id, "fulfillment.stock_released.v1")
    reasons = [m["reason"] for m in f.stock_movements(db, mug)["items"]]
    assert reasons[0].endswith("cancelled") and reasons[1].startswith("reserved for order")
    # a redelivered cancel changes nothing (the inbox dedupes) and reserved never goes negative
    deliver(db, carrier, stream, stream.envelopes[-1])
    assert level(db, mug) == (5, 0)


def test_out_of_stock_reserves_nothing_is_announced_and_a_retry_after_restock_reserves(
    db: Any, carrier: InMemoryCarrier
) -> None:
    a, b = sku("A"), sku("B")
    stock(db, a, 5)
    stock(db, b, 1)
    stream = placed(db, carrier, [(a, 2, "1.00"), (b, 2, "1.00")], stage=None)
    assert level(db, a) == (5, 0) and level(db, b) == (1, 0)  # all or nothing
    [event] = outbox(db, stream.order_id, "fulfillment.out_of_stock.v1")
    assert event["reason"] == "out_of_stock"
    assert event["lines"] == [{"line_id": "2", "sku": b, "requested": 2, "available": 1}]
    assert f.get_fulfillment(db, stream.order_id)["reservation"] == "out_of_stock"
    f.adjust_stock(db, b, {"delta": 3, "reason": "delivery from supplier"}, STAFF)
    view = f.retry_reservation(db, stream.order_id, STAFF)
    assert view["reservation"] == "reserved"
    assert level(db, a) == (5, 2) and level(db, b) == (4, 2)
    with pytest.raises(NotAllowedInThisState):
        f.retry_reservation(db, stream.order_id, STAFF)



def test_a_batch_of_placements_reserves_each_order_whole_with_a_movement_and_an_event_per_allocation(
    db: Any, carrier: InMemoryCarrier
) -> None:
    """One batch, as the subscriber hands it over: an order with two lines of one SKU drawing from two
    locations, and two orders that each want the last two units of another SKU (one gets both, the other
    nothing: all or nothing, whichever the batch applies first)."""
    mug, cap = sku("MUG"), sku("CAP")
    stock(db, mug, 4)
    stock(db, mug, 2, location="backroom")
    stock(db, cap, 2)
    streams = [OrderStream.place(place_order(lines=lines, shipping_address=ADDRESS),
                                 number=int(uuid.uuid4().int % 900_000) + 1000)
               for lines in ([(mug, 3, "1.00"), (mug, 2, "1.00")], [(cap, 2, "1.00")], [(cap, 2, "1.00")])]
    assert f.handle_order_events(db, carrier, [s.envelopes[0] for s in streams]) == ["applied"] * 3
    assert (level(db, mug), level(db, mug, "backroom"), level(db, cap)) == ((4, 4), (2, 1), (2, 2))
    number = streams[0].placed.number
    moves = [(m["location"], m["delta_reserved"], m["on_hand_after"], m["reserved_after"], m["order_number"])
             for m in reversed(f.stock_movements(db, mug)["items"]) if m["delta_reserved"]]
    assert moves == [("main", 3, 4, 3, number), ("main", 1, 4, 4, number), ("backroom", 1, 2, 1, number)]
    changed = [(e["location"], e["delta_reserved"], e["reserved"], e["available"])
               for e in outbox(db, mug, "fulfillment.stock_changed.v1") if e["delta_reserved"]]
    assert changed == [("main", 3, 3, 1), ("main", 1, 4, 0), ("backroom", 1, 1, 1)]
    assert outbox(db, streams[0].order_id, "fulfillment.stock_reserved.v1")[0]["lines"] == [
        {"line_id": "1", "sku": mug, "quantity": 3}, {"line_id": "2", "sku": mug, "quantity": 2}]
    assert [ln["reserved"] for ln in f.get_fulfillment(db, streams[0].order_id)["lines"]] == [3, 2]
    states = {f.get_fulfillment(db, s.order_id)["reservation"]: s for s in streams[1:]}
    assert sorted(states) == ["out_of_stock", "reserved"]
    assert outbox(db, states["out_of_stock"].order_id, "fulfillment.out_of_stock.v1")[0]["lines"] == [
        {"line_id": "1", "sku": cap, "requested": 2, "available": 0}]
    assert [ln["reserved"] for ln in f.get_fulfillment(db, states["out_of_stock"].order_id)["lines"]] == [0]

def test_in_one_batch_units_a_cancel_releases_go_to_a_later_order_and_a_redelivered_placement_changes_nothing(
    db: Any, carrier: InMemoryCarrier
) -> None:
    """The batch locks its SKUs' levels once and plans every order on them: what an earlier event of the same
    batch released (a cancel) is available to a later placement, and what an earlier placement took is not.
    (The inbox applies a batch's orders in order-id order: the three orders are named in that order.)"""
    lamp = sku("LAMP")
    stock(db, lamp, 3)
    a, b, c = sorted((OrderStream.place(place_order(lines=[(lamp, 2, "5.00")], shipping_address=ADDRESS),
                                        number=int(uuid.uuid4().int % 900_000) + 1000) for _ in range(3)),
                     key=lambda s: s.order_id)
    deliver(db, carrier, a)
    assert level(db, lamp) == (3, 2)
    batch = [c.envelopes[0], b.envelopes[0], a.move(Stage.cancelled), a.envelopes[0]]
    assert f.handle_order_events(db, carrier, batch) == ["applied", "applied", "applied", "duplicate"]
    assert f.get_fulfillment(db, a.order_id)["reservation"] == "released"
    assert f.get_fulfillment(db, b.order_id)["reservation"] == "reserved"  # the 2 the cancel released
    assert f.get_fulfillment(db, c.order_id)["reservation"] == "out_of_stock"  # 1 left after b
    assert level(db, lamp) == (3, 2)


def test_manual_split_shipment_consumes_at_hand_over_and_the_status_follows(db: Any, carrier: InMemoryCarrier) -> None:
    mug, cap = sku("MUG"), sku("CAP")
    stock(db, mug, 10)
    stock(db, cap, 10)
    stream = placed(db, carrier, [(mug, 3, "10.00"), (cap, 1, "9.99")])
    oid = stream.order_id
    first = f.create_shipment(db, oid, {"lines": [{"line": "1", "quantity": 2}]}, STAFF)
    assert (first["number"], first["status"]) == (f"{stream.placed.number}-S1", "awaiting_shipment")
    assert f.get_fulfillment(db, oid)["status"] == "dispatched"
    assert level(db, mug) == (10, 3)  # packed, not handed over: still only reserved
    f.edit_shipment(db, first["id"], {"status": "shipped", "tracking_number": "TRK1", "carrier": "Local"}, STAFF)
    assert level(db, mug) == (8, 1)
    assert f.get_fulfillment(db, oid)["status"] == "partially_fulfilled"
    second = f.create_shipment(db, oid, {"lines": [{"line": cap, "quantity": 1}, {"line": "1", "quantity": 1}],
                                         "shipped": True}, STAFF)
    assert second["status"] == "shipped"
    view = f.get_fulfillment(db, oid)
    assert view["status"] == "fulfilled" and view["reservation"] == "consumed"
    assert level(db, mug) == (7, 0) and level(db, cap) == (9, 0)
    with pytest.raises(NotAllowedInThisState) as exc:  # nothing left to fulfil
        f.create_shipment(db, oid, {}, STAFF)
    assert "already in a shipment" in str(exc.value)
    f.mark_delivered(db, first["id"], {}, STAFF)
    assert f.get_fulfillment(db, oid)["status"] == "fulfilled"
    f.mark_delivered(db, second["id"], {}, STAFF)
    assert f.get_fulfillment(db, oid)["status"] == "delivered"
    changes = [(e["from_status"], e["to_status"]) for e in outbox(db, oid, "fulfillment.status_changed.v1")]
    assert changes == [("unfulfilled", "dispatched"), ("dispatched", "partially_fulfilled"),
                       ("partially_fulfilled", "fulfilled"), ("fulfilled", "delivered")]


def test_more_than_unfulfilled_is_refused_naming_the_field(db: Any, carrier: InMemoryCarrier) -> None:
    stream = placed(db, carrier, [(sku("X"), 2, "1.00")])
    with pytest.raises(InvalidRequest) as exc:
        f.create_shipment(db, stream.order_id, {"lines": [{"line": "1", "quantity": 3}]}, STAFF)
    assert exc.value.extra["errors"][0]["field"] == "lines[0].quantity"


def test_a_failed_delivery_comes_back_to_stock_and_is_reshipped(db: Any, carrier: InMemoryCarrier) -> None:
    mug = sku("MUG")
    stock(db, mug, 4)
    stream = placed(db, carrier, [(mug, 2, "10.00")])
    oid = stream.order_id
    a = f.create_shipment(db, oid, {"lines": [{"line": "1", "quantity": 1}], "shipped": True}, STAFF)
    b = f.create_shipment(db, oid, {"lines": [{"line": "1", "quantity": 1}], "shipped": True}, STAFF)
    assert level(db, mug) == (2, 0)
    f.mark_delivered(db, a["id"], {}, STAFF)
    f.edit_shipment(db, b["id"], {"status": "delivery_failed"}, STAFF)
    assert level(db, mug) == (3, 1)  # back on hand, reserved for the re-shipment
    view = f.get_fulfillment(db, oid)
    assert view["status"] == "partially_fulfilled" and view["lines"][0]["unfulfilled"] == 1
    c = f.create_shipment(db, oid, {"shipped": True}, STAFF)
    assert c["lines"] == [{"line_id": "1", "sku": mug, "name": mug.title(), "quantity": 1}]
    f.mark_delivered(db, c["id"], {}, STAFF)
    assert level(db, mug) == (2, 0)
    assert f.get_fulfillment(db, oid)["status"] == "delivered"
    with pytest.raises(NotAllowedInThisState):  # a delivered shipment cannot be cancelled
        f.cancel_shipment(db, carrier, a["id"], {}, STAFF)


def test_pickup_ends_picked_up(db: Any, carrier: InMemoryCarrier) -> None:
    stream = placed(db, carrier, [(sku("P"), 1, "5.00")])
    s = f.create_shipment(db, stream.order_id, {"shipping_point": "pickup"}, STAFF)
    f.mark_delivered(db, s["id"], {}, STAFF)
    assert f.get_fulfillment(db, stream.order_id)["status"] == "picked_up"


def test_returns_only_delivered_units_restock_per_line_and_reach_returned(db: Any, carrier: InMemoryCarrier) -> None:
    mug, cap = sku("MUG"), sku("CAP")
    stock(db, mug, 5)
    stock(db, cap, 5)
    stream = placed(db, carrier, [(mug, 2, "10.00"), (cap, 1, "9.99")])
    oid = stream.order_id
    s = f.create_shipment(db, oid, {"shipped": True}, STAFF)
    with pytest.raises(InvalidRequest):  # not delivered yet
        f.record_return(db, oid, {"lines": [{"line": "1", "quantity": 1}]}, STAFF)
    f.mark_delivered(db, s["id"], {}, STAFF)
    assert level(db, mug) == (3, 0)
    r = f.record_return(db, oid, {"lines": [{"line": mug, "quantity": 1, "restock": True}], "reason": "too big"},
                        STAFF)
    assert r["lines"] == [{"line": "1", "quantity": 1, "restock": True, "location": "main"}]
    assert level(db, mug) == (4, 0)
    view = f.get_fulfillment(db, oid)
    assert view["status"] == "partially_returned" and view["lines"][0]["returnable"] == 1
    [event] = outbox(db, oid, "fulfillment.return_recorded.v1")
    assert event["lines"] == [{"line_id": "1", "sku": mug, "quantity": 1}] == event["restocked"]
    with pytest.raises(InvalidRequest):
        f.record_return(db, oid, {"lines": [{"line": "1", "quantity": 2}]}, STAFF)
    f.record_return(db, oid, {"lines": [{"line": "1", "quantity": 1}, {"line": "2", "quantity": 1}]}, STAFF)
    assert level(db, mug) == (4, 0) and level(db, cap) == (4, 0)  # not restocked
    assert f.get_fulfillment(db, oid)["status"] == "returned"


def test_a_cancelled_order_cannot_be_fulfilled_even_from_a_stale_screen(db: Any, carrier: InMemoryCarrier) -> None:
    mug = sku("MUG")
    stock(db, mug, 2)
    stream = placed(db, carrier, [(mug, 1, "10.00")])
    screen = f.get_fulfillment(db, stream.order_id)
    assert screen["can_fulfill"]
    deliver(db, carrier, stream, stream.move(Stage.cancelled))
    with pytest.raises(NotAllowedInThisState) as exc:
        f.create_shipment(db, stream.order_id, {}, STAFF)
    assert exc.value.extra["field"] == "order_stage"
    assert f.get_fulfillment(db, stream.order_id)["shipments"] == []
    assert level(db, mug) == (2, 0)


def test_not_before_approval_and_not_on_hold(db: Any, carrier: InMemoryCarrier) -> None:
    stream = placed(db, carrier, [(sku("Q"), 1, "1.00")], stage=None)
    with pytest.raises(NotAllowedInThisState) as exc:
        f.create_shipment(db, stream.order_id, {}, STAFF)
    assert "approve it" in str(exc.value)
    deliver(db, carrier, stream, stream.move(Stage.on_hold, "out_of_stock"))
    with pytest.raises(NotAllowedInThisState):
        f.mark_packed(db, stream.order_id, STAFF)


def test_mark_packed_makes_the_order_dispatched(db: Any, carrier: InMemoryCarrier) -> None:
    stream = placed(db, carrier, [(sku("R"), 1, "1.00")])
    assert f.mark_packed(db, stream.order_id, STAFF)["status"] == "dispatched"


def test_a_carrier_label_tracked_forward_only_and_a_late_update_does_not_move_it_back(
    db: Any, carrier: InMemoryCarrier
) -> None:
    mug = sku("MUG")
    stock(db, mug, 3)
    stream = placed(db, carrier, [(mug, 1, "10.00")])
    oid = stream.order_id
    rates = f.carrier_rates(db, carrier, oid, {"packages": [{"preset": "small_box", "weight_grams": 500}]})
    rate = rates["rates"][0]
    body = {"packages": [{"preset": "small_box", "weight_grams": 500}], "rate_id": rate["rate_id"]}
    s = f.buy_label(db, carrier, oid, body, STAFF, "key-1")
    again = f.buy_label(db, carrier, oid, body, STAFF, "key-1")
    assert again["id"] == s["id"] and len(carrier.labels) == 1
    assert (s["kind"], s["label_available"], s["can_edit"]) == ("carrier", True, False)
    with pytest.raises(NotAllowedInThisState) as exc:
        f.edit_shipment(db, s["id"], {"tracking_number": "MINE"}, STAFF)
    assert exc.value.extra["field"] == "tracking_number"
    with pytest.raises(NotAllowedInThisState):
        f.mark_delivered(db, s["id"], {}, STAFF)
    tn = s["tracking_number"]
    in_transit = carrier.track(tn, "in_transit")
    assert f.handle_carrier_webhook(db, carrier, *in_transit)["applied"]
    assert level(db, mug) == (2, 0)
    assert f.handle_carrier_webhook(db, carrier, *carrier.track(tn, "delivered"))["applied"]
    late = carrier.track(tn, "out_for_delivery", occurred_at=datetime.now(UTC) - timedelta(hours=2))
    assert not f.handle_carrier_webhook(db, carrier, *late)["applied"]
    assert not f.handle_carrier_webhook(db, carrier, *in_transit)["applied"]  # a duplicate
    shipment = f.get_shipment(db, s["id"])
    assert shipment["status"] == "delivered"
    assert [(t["status"], t["applied"]) for t in shipment["tracking"]] == [
        ("awaiting_shipment", True), ("in_transit", True), ("delivered", True), ("out_for_delivery", False)]
    assert f.get_fulfillment(db, oid)["status"] == "delivered"
    with pytest.raises(DomainError):
        f.handle_carrier_webhook(db, carrier, in_transit[0], {"Carrier-Signature": "forged"})
    assert f.shipment_label(db, carrier, s["id"])["content_type"] == "application/pdf"


def test_cancelling_the_order_voids_the_label_and_a_refused_void_is_reported(
    db: Any, carrier: InMemoryCarrier
) -> None:
    mug = sku("MUG")
    stock(db, mug, 3)
    stream = placed(db, carrier, [(mug, 2, "10.00")])
    oid = stream.order_id
    rate = f.carrier_rates(db, carrier, oid, {"packages": [{"weight_grams": 500}]})["rates"][0]["rate_id"]
    one = f.buy_label(db, carrier, oid, {"lines": [{"line": "1", "quantity": 1}], "packages": [{"weight_grams": 1}],
                                         "rate_id": rate}, STAFF)
    two = f.buy_label(db, carrier, oid, {"lines": [{"line": "1", "quantity": 1}], "packages": [{"weight_grams": 1}],
                                         "rate_id": rate}, STAFF)
    carrier.refuse_void = True
    with pytest.raises(NotAllowedInThisState) as exc:
        f.cancel_shipment(db, carrier, two["id"], {}, STAFF)
    assert exc.value.extra["carrier_reason"] == "label_in_transit"
    assert f.get_shipment(db, two["id"])["status"] == "awaiting_shipment"
    assert len(outbox(db, oid, "fulfillment.label_void_failed.v1")) == 1
    carrier.refuse_void = False
    deliver(db, carrier, stream, stream.move(Stage.cancelled))
    assert f.get_shipment(db, one["id"])["status"] == "canceled"
    assert f.get_shipment(db, two["id"])["status"] == "canceled"
    assert set(carrier.voided) == {carrier.by_key[k] for k, _ in [(c[1], 0) for c in carrier.calls
                                                                  if c[0] == "buy_label"]}
    assert level(db, mug) == (3, 0)


def test_reconciliation_reports_drift_after_a_corruption_and_fixes_it(db: Any, carrier: InMemoryCarrier) -> None:
    mug = sku("MUG")
    stock(db, mug, 5)
    placed(db, carrier, [(mug, 2, "1.00")])
    assert all(d["sku"] != mug for d in f.reconcile_stock(db)["drift"])
    with db.transaction() as tx:
        tx.execute("UPDATE stock_levels SET reserved = 4 WHERE sku = %s", (mug,))
    report = f.reconcile_stock(db)
    assert {"sku": mug, "location": "main", "recorded_reserved": 4, "reservations_total": 2} in report["drift"]
    assert not report["fixed"]
    assert f.reconcile_stock(db, True)["fixed"]
    assert level(db, mug) == (5, 2)
    assert all(d["sku"] != mug for d in f.reconcile_stock(db)["drift"])


def test_stock_never_below_reserved(db: Any, carrier: InMemoryCarrier) -> None:
    mug = sku("MUG")
    stock(db, mug, 3)
    placed(db, carrier, [(mug, 2, "1.00")])
    with pytest.raises(NotAllowedInThisState) as exc:
        stock(db, mug, 1)
    assert exc.value.extra["field"] == "on_hand"
    with pytest.raises(DomainError) as exc2:
        f.adjust_stock(db, mug, {"delta": -2, "reason": "broken"}, STAFF)
    assert exc2.value.status == 409 and exc2.value.extra["field"] == "delta"
    assert level(db, mug) == (3, 2)
    moves = f.stock_movements(db, mug)["items"]
    assert sum(m["delta_on_hand"] for m in moves) == 3 and sum(m["delta_reserved"] for m in moves) == 2


def test_document_data_numbers_and_amounts(db: Any, carrier: InMemoryCarrier) -> None:
    from services.fulfillment.usecases.documents import document_data

    stream = placed(db, carrier, [(sku("MUG"), 3, "10.00"), (sku("CAP"), 1, "9.99")])
    oid = stream.order_id
    local = f.create_shipment(db, oid, {"lines": [{"line": "1", "quantity": 2}]}, STAFF)
    f.create_shipment(db, oid, {"shipping_point": "pickup"}, STAFF)
    with db.transaction() as tx:
        inv = document_data(tx, "invoice", oid)
        inv_again = document_data(tx, "invoice", oid)
        slip = document_data(tx, "packing_slip", local["id"])
        details = document_data(tx, "order_details", oid)
    assert inv.document_number.startswith("INV-") and len(inv.document_number) == 10
    assert inv_again.document_number == inv.document_number
    assert str(inv.total) == "44.99" and str(inv.shipping) == "5.00" and inv.currency == "EUR"
    assert [(s.shipping_point, [(ln.line_id, ln.quantity, str(ln.line_total)) for ln in s.lines])
            for s in inv.sections] == [("local", [("1", 2, "20.00")]), ("pickup", [("1", 1, "10.00"),
                                                                                   ("2", 1, "9.99")])]
    assert slip.document_number == f"PS-{local['number']}"
    assert [(ln.line_id, ln.quantity) for ln in slip.lines] == [("1", 2)]
    assert details.document_number == f"ORD-{stream.placed.number}"
    assert details.ship_to is not None and "Berlin" in " ".join(details.ship_to.address_lines)


def test_status_change_carries_the_shipments(db: Any, carrier: InMemoryCarrier) -> None:
    stream = placed(db, carrier, [(sku("Z"), 1, "1.00")])
    f.create_shipment(db, stream.order_id, {"shipped": True, "carrier": "Bike", "tracking_number": "B1"}, STAFF)
    last = outbox(db, stream.order_id, "fulfillment.status_changed.v1")[-1]
    assert last["to_status"] == "fulfilled" and last["shipments"][0]["status"] == ShipmentStatus.shipped.value


def test_oms_fulfillment_reconcile_reports_drift_and_fixes_it(db: Any, carrier: InMemoryCarrier) -> None:
    from typer.testing import CliRunner

    from services.fulfillment.cli import app

    mug = sku("CLI")
    stock(db, mug, 4)
    placed(db, carrier, [(mug, 1, "1.00")])
    with db.transaction() as tx:
        tx.execute("UPDATE stock_levels SET reserved = 3 WHERE sku = %s", (mug,))
    runner = CliRunner()
    found = runner.invoke(app, ["reconcile"])
    assert found.exit_code == 1 and mug in found.output
    fixed = runner.invoke(app, ["reconcile", "--fix"])
    assert fixed.exit_code == 0 and "fixed" in fixed.output
    assert level(db, mug) == (4, 1)
    assert runner.invoke(app, ["reconcile"]).exit_code == 0


def test_a_parcel_that_comes_back_after_the_order_was_cancelled_is_only_put_back_on_hand(
    db: Any, carrier: InMemoryCarrier
) -> None:
    mug = sku("MUG")
    stock(db, mug, 2)
    stream = placed(db, carrier, [(mug, 1, "10.00")])
    s = f.create_shipment(db, stream.order_id, {"shipped": True}, STAFF)
    deliver(db, carrier, stream, stream.move(Stage.cancelled))
    assert f.get_shipment(db, s["id"])["status"] == "shipped"  # it had left: not cancelled
    assert level(db, mug) == (1, 0)
    f.edit_shipment(db, s["id"], {"status": "delivery_failed"}, STAFF)
    assert level(db, mug) == (2, 0)
    assert all(d["sku"] != mug for d in f.reconcile_stock(db)["drift"])


def test_a_batch_of_order_copies_is_written_exactly_once_each_in_one_statement(db: Any) -> None:
    """The copies fulfillment prints documents and labels from keep every value as placed (money to the cent,
    the placing time to the microsecond, JSON as sent, no address as none), a redelivered copy is not written
    again, and the whole batch is one statement (it was a command and a wait per order)."""
    from decimal import Decimal

    import psycopg

    from services.fulfillment import store

    at = datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC)

    def row(n: int, address: dict[str, Any] | None) -> dict[str, Any]:
        return {"order_id": uuid.uuid4(), "number": 900_000 + n, "test": n % 2 == 0, "stage": "placed",
                "channel": "web", "currency": "EUR",
                "items": [{"line_id": "1", "sku": "COPY-1", "name": "Tee \u00e9", "quantity": 2,
                           "unit_price": "12.345", "line_total": "24.690"}],
                "subtotal": Decimal("24.690"), "shipping": Decimal("4.9"), "discount": Decimal("0"),
                "tax": Decimal("5.01"), "total": Decimal("34.600"), "customer": {"name": "Asha", "email": None},
                "address": address, "payment_method": None, "customer_note": "ring \"twice\"", "placed_at": at}

    rows = [row(1, ADDRESS), row(2, None), row(3, ADDRESS)]
    with db.transaction() as tx:
        sent: list[str] = []
        execute, executemany = tx.execute, psycopg.Cursor.executemany

        def counting(query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query))
            return execute(query, *args, **kwargs)

        def counting_many(cur: Any, query: Any, params: Any, **kwargs: Any) -> Any:
            sent.extend(str(query) for _ in params)  # a pipelined executemany: a command per row
            return executemany(cur, query, params, **kwargs)

        tx.execute = counting
        psycopg.Cursor.executemany = counting_many  # type: ignore[method-assign]
        try:
            assert store.insert_orders(tx, rows) == {r["order_id"] for r in rows}
        finally:
            psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
        assert len(sent) == 1
    with db.transaction() as tx:
        assert store.insert_orders(tx, [rows[1]]) == set()  # a redelivery writes nothing
        for r in rows:
            got = store.order_row(tx, r["order_id"])
            assert got is not None
            for column, value in r.items():
                assert got[column] == value, column
