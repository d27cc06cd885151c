"""Orders and payments follow fulfillment (issue #11), with the real services: fulfillment's events are published
to the real broker (as the fulfillment service's relay would) and the running orders and payments services
consume them. The order's stage moves after the fulfillment status, through every stage in between; a held
order stays held; an order that cannot be served goes on hold; the list filters and sorts by the fulfillment
status; payments offer the returned units in the refund preview.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.fulfillment.contracts import events as fev
from services.orders.usecases.changes import transition
from services.orders.usecases.placement import place_order
from services.orders.usecases.queries import get_order, list_orders
from services.payments import usecases as payments
from shared.envelope import Envelope
from shared.errors import NotFound
from tests.builders import order_cmd
from tests.conftest import Servers
from tests.integration.conftest import publish_events, wait_for
from tests.integration.test_orders_service import ADDRESS, ASHA, CUSTOMER, marker
from tests.processes import service_process

pytestmark = pytest.mark.integration

FULFILLMENT = {"type": "system", "id": "fulfillment", "name": "Fulfillment service"}


@pytest.fixture(scope="module")
def services(migrated: dict[str, str], logs: Any) -> Iterator[None]:
    """The orders and payments services, running, consuming from the broker."""
    with service_process("orders", migrated, logs), service_process("payments", migrated, logs):
        yield


@pytest.fixture(scope="module")
def payments_db(migrated: dict[str, str], servers: Servers) -> Iterator[Any]:
    from shared.db import Database

    db = Database(servers.database_url, "payments", size=2)
    db.open()
    yield db
    db.close()


class Stream:
    """One order's fulfillment events as the fulfillment service's outbox numbers them (sequence, typecounts)."""

    def __init__(self, order: dict[str, Any]) -> None:
        self.order = order
        self.sequence = 0
        self.counts: Counter[str] = Counter()
        self.status = "unfulfilled"

    def base(self) -> dict[str, Any]:
        return {"order_id": self.order["id"], "number": self.order["number"], "at": datetime.now(UTC),
                "actor": FULFILLMENT}

    def envelope(self, data: Any) -> Envelope:
        self.sequence += 1
        self.counts[data.event_type] += 1
        return Envelope(
            source="/oms/fulfillment", type=data.event_type, subject=self.order["id"], sequence=self.sequence,
            typecounts=",".join(f"{t}:{n}" for t, n in sorted(self.counts.items())),
            correlationid=self.order["id"], causationid="test", data=data.model_dump(mode="json"),
        )

    def status_changed(self, to: str, shipment_status: str = "shipped", **counts: int) -> Envelope:
        shipment = fev.ShipmentSummary(
            shipment_id=uuid.uuid5(uuid.NAMESPACE_URL, self.order["id"]), number=f"{self.order['number']}-S1",
            kind="manual", shipping_point="local", status=shipment_status, carrier="DHL", tracking_number="TRK-1",
            lines=[fev.LineQuantity(line_id="1", sku=self.order["items"][0]["sku"], quantity=2)],
        )
        data = fev.FulfillmentStatusChanged(
            **self.base(), from_status=self.status, to_status=to, ordered=2, shipments=[shipment],
            **{"handed_over": 0, "delivered": 0, "returned": 0, **counts},
        )
        self.status = to
        return self.envelope(data)


def publish(servers: Servers, *envelopes: Envelope) -> None:
    publish_events(servers.amqp_url, list(envelopes))


def stage_becomes(db: Any, oid: str, stage: str, what: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(lambda: (o := get_order(db, oid))["stage"] == stage and o, timeout=20, what=what)
    return found


def approved_order(db: Any, tag: str, **kw: Any) -> dict[str, Any]:
    """A cash-on-delivery order, confirmed on its own, then approved by staff."""
    placed = place_order(db, order_cmd(tag, shipping_address=ADDRESS, payment_method="cash_on_delivery",
                                       customer_note="ring twice", **kw), CUSTOMER, None)
    assert placed["stage"] == "confirmed"
    return transition(db, placed["id"], {"to": "approved"}, ASHA)


def moves(order: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(h["from_stage"], h["to_stage"], h["actor"]["id"])
            for h in order["history"] if h["action"] == "stage_changed"]


def test_the_order_follows_from_dispatched_to_returned(
    services: None, orders_db: Any, servers: Servers
) -> None:
    order = approved_order(orders_db, marker())
    oid = order["id"]
    stream = Stream(order)

    publish(servers, stream.status_changed("dispatched", shipment_status="awaiting_shipment"))
    processed = stage_becomes(orders_db, oid, "processed", "dispatched -> processed")
    assert processed["fulfillment_status"] == "dispatched"
    assert processed["shipments"][0]["status"] == "awaiting_shipment"

    publish(servers, stream.status_changed("fulfilled", handed_over=2))
    shipped = stage_becomes(orders_db, oid, "shipped", "fulfilled -> shipped")
    assert shipped["shipments"][0]["tracking_number"] == "TRK-1"

    publish(servers, stream.status_changed("delivered", shipment_status="delivered", handed_over=2, delivered=2))
    delivered = stage_becomes(orders_db, oid, "delivered", "delivered -> delivered")

    # Half came back: the order stays delivered, only the projection changes (no new version).
    publish(servers, stream.status_changed("partially_returned", shipment_status="delivered", handed_over=2,
                                           delivered=2, returned=1))
    wait_for(lambda: get_order(orders_db, oid)["fulfillment_status"] == "partially_returned", timeout=20,
             what="the partial return projected")
    still = get_order(orders_db, oid)
    assert (still["stage"], still["version"]) == ("delivered", delivered["version"])

    publish(servers, stream.status_changed("returned", shipment_status="delivered", handed_over=2, delivered=2,
                                           returned=2))
    returned = stage_becomes(orders_db, oid, "returned", "returned -> returned")
    assert moves(returned)[-4:] == [
        ("approved", "processed", "fulfillment"), ("processed", "shipped", "fulfillment"),
        ("shipped", "delivered", "fulfillment"), ("delivered", "returned", "fulfillment"),
    ]
    assert returned["fulfillment_status"] == "returned"


def test_fulfilled_straight_from_approved_moves_twice_and_each_move_is_recorded(
    services: None, orders_db: Any, servers: Servers
) -> None:
    order = approved_order(orders_db, marker())
    stream = Stream(order)
    publish(servers, stream.status_changed("fulfilled", handed_over=2))
    shipped = stage_becomes(orders_db, order["id"], "shipped", "approved -> processed -> shipped")
    assert moves(shipped)[-2:] == [("approved", "processed", "fulfillment"), ("processed", "shipped", "fulfillment")]
    assert [h["reason"] for h in shipped["history"][-2:]] == ["fulfillment fulfilled"] * 2


def test_a_held_order_is_not_moved_and_the_history_says_why(
    services: None, orders_db: Any, servers: Servers
) -> None:
    order = approved_order(orders_db, marker())
    held = transition(orders_db, order["id"], {"to": "on_hold", "reason": "customer asked to wait"}, ASHA)
    stream = Stream(order)
    publish(servers, stream.status_changed("fulfilled", handed_over=2))
    noted = wait_for(lambda: (o := get_order(orders_db, order["id"]))["fulfillment_status"] == "fulfilled" and o,
                     timeout=20, what="the status projected on the held order")
    assert (noted["stage"], noted["held_from"]) == ("on_hold", "approved")
    entry = noted["history"][-1]
    assert (entry["action"], entry["actor"]["id"]) == ("fulfillment_not_followed", "fulfillment")
    assert "on hold" in entry["reason"] and entry["data"]["would_move_to"] == "shipped"
    assert noted["version"] == held["version"] + 1


def test_out_of_stock_holds_a_placed_order(services: None, orders_db: Any, servers: Servers) -> None:
    order = place_order(orders_db, order_cmd(marker()), CUSTOMER, None)
    assert order["stage"] == "placed"
    stream = Stream(order)
    short = fev.ShortLine(line_id="1", sku=order["items"][0]["sku"], requested=2, available=1)
    publish(servers, stream.envelope(fev.OutOfStock(**stream.base(), lines=[short])))
    held = stage_becomes(orders_db, order["id"], "on_hold", "out of stock -> on hold")
    entry = held["history"][-1]
    assert (held["held_from"], entry["reason"], entry["actor"]["id"]) == ("placed", "out_of_stock", "fulfillment")
    assert entry["data"]["lines"][0]["available"] == 1


def test_the_list_filters_and_sorts_by_fulfillment_status(services: None, orders_db: Any, servers: Servers) -> None:
    tag = marker()
    orders = [approved_order(orders_db, tag) for _ in range(4)]
    statuses = ["fulfilled", "dispatched", "unfulfilled", "dispatched"]
    for order, status in zip(orders, statuses, strict=True):
        if status != "unfulfilled":
            publish(servers, Stream(order).status_changed(status, handed_over=2 if status == "fulfilled" else 0))
    for order, status in zip(orders, statuses, strict=True):
        wait_for(lambda o=order, s=status: get_order(orders_db, o["id"])["fulfillment_status"] == s, timeout=20,
                 what=f"order {order['number']} {status}")

    def listed(**query: Any) -> list[tuple[str, int]]:
        page = list_orders(orders_db, {"q": tag, "limit": 2, **query})
        found = [(o["fulfillment_status"], o["number"]) for o in page["items"]]
        while page["next_cursor"]:  # the cursor walks the new sort too
            page = list_orders(orders_db, {"q": tag, "limit": 2, **query, "cursor": page["next_cursor"]})
            found += [(o["fulfillment_status"], o["number"]) for o in page["items"]]
        return found

    everything = sorted((s, o["number"]) for o, s in zip(orders, statuses, strict=True))
    assert listed(sort="fulfillment_status", direction="asc") == everything
    assert listed(sort="fulfillment_status", direction="desc") == everything[::-1]
    assert {n for _, n in listed(fulfillment_status=["dispatched", "fulfilled"])} == {
        o["number"] for o, s in zip(orders, statuses, strict=True) if s in ("dispatched", "fulfilled")
    }
    assert listed(fulfillment_status=["unfulfilled"], stage=["approved"]) == [("unfulfilled", orders[2]["number"])]
    assert listed(fulfillment_status="dispatched", sort="fulfillment_status", direction="asc") == [
        ("dispatched", orders[1]["number"]), ("dispatched", orders[3]["number"])
    ]


def test_payments_offer_the_returned_units_in_the_refund_preview(
    services: None, orders_db: Any, payments_db: Any, servers: Servers
) -> None:
    order = approved_order(orders_db, marker())
    oid = order["id"]
    def known() -> bool:
        try:
            return payments.summary(payments_db, oid)["stage"] == "approved"
        except NotFound:
            return False

    wait_for(known, timeout=20, what="payments to know the order")
    total = order["totals"]["total"]
    payments.record_manual_payment(payments_db, oid, {"amount": total, "reference": "cash-1"}, ASHA)
    line = order["items"][0]
    assert line["quantity"] == 2
    stream = Stream(order)
    returned = fev.ReturnRecorded(**stream.base(), return_id=uuid.uuid4(),
                                  lines=[fev.LineQuantity(line_id="1", sku=line["sku"], quantity=1)], restocked=[])
    event = stream.envelope(returned)
    publish(servers, event, event)  # delivered twice: counted once

    summary = wait_for(lambda: (s := payments.summary(payments_db, oid))["returns"] and s, timeout=20,
                       what="payments to record the return")
    assert [(r["line_id"], r["returned"], r["returned_not_refunded"]) for r in summary["returns"]] == [("1", 1, 1)]

    preview = payments.refund_preview(payments_db, oid, {"from_returns": True})
    assert preview["ok"], preview["errors"]
    [refund_line] = preview["lines"]
    assert (refund_line["line_id"], refund_line["quantity"]) == ("1", 1)
    assert Decimal(refund_line["amount"]) == Decimal(line["line_total"]) / 2
    assert preview["returns"][0]["returned_not_refunded"] == 1

    done = payments.refund(payments_db, None, oid, {"from_returns": True, "reference": "ret-1"}, ASHA)  # type: ignore[arg-type]
    assert done["ok"] and done["returns"][0]["returned_not_refunded"] == 0
    again = payments.refund(payments_db, None, oid, {"from_returns": True, "reference": "ret-1"}, ASHA)  # type: ignore[arg-type]
    assert again["already_applied"], "the same refund repeated is a replay, not a second refund"
    nothing = payments.refund_preview(payments_db, oid, {"from_returns": True})
    assert not nothing["ok"] and nothing["errors"][0]["code"] == "nothing_to_refund"
