"""The order timeline's words (notifications ``usecases.timeline``): a one-line summary in the merchant's words
for EVERY event type of the orders, payments and fulfillment contracts, with actor and time; messages and
their statuses as entries of source ``notifications``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.fulfillment.contracts.events import FULFILLMENT_EVENTS
from services.notifications.contracts.schemas import TimelineEntry
from services.notifications.usecases.timeline import (
    NOT_ON_TIMELINE,
    STORY_EVENT_TYPES,
    SUMMARIES,
    entry_of,
    message_entry,
)
from services.orders.contracts.events import ORDER_EVENTS
from services.payments.contracts.events import PAYMENT_EVENTS
from tests.unit.test_notifications_alerts import AT, ORDER_ID, SAMPLES, changed, envelope

pytestmark = pytest.mark.unit

EVERY_TYPE = [e.event_type for e in (*ORDER_EVENTS, *PAYMENT_EVENTS, *FULFILLMENT_EVENTS)]

EXPECTED = {
    "order.placed.v1": "Order #1001 placed on whatsapp by Ana (staff): 3 items, 44.535 TND",
    "order.stage_changed.v1": "Stage: approved -> processed by Ana (staff)",
    "order.address_set.v1": "Shipping address set by Ana (staff): 12 MG Road, Bengaluru, IN",
    "order.payment_method_set.v1": "Payment method: cash on delivery by Ana (staff)",
    "order.customer_note_set.v1": 'Customer note by Ana (staff): "Please ring twice"',
    "order.customer_changed.v1": "Customer changed by Ana (staff): Asha Rao -> Ravi Rao",
    "order.note_added.v1": 'Note added by Ana (staff): "Gift wrap it"',
    "order.note_edited.v1": 'Note edited by Ana (staff): "Gift wrap it in red"',
    "order.note_deleted.v1": "Note deleted by Ana (staff)",
    "payment.status_changed.v1": "Payment status: unpaid -> paid, 44.535 TND captured, 0.000 TND due",
    "payment.link_created.v1": "Payment link sent for 44.535 TND",
    "payment.received.v1": "Payment received: 44.535 TND (card)",
    "payment.failed.v1": "Payment failed: 44.535 TND (insufficient funds)",
    "refund.completed.v1": "Refund R-1001-1: 10.000 TND",
    "refund.paid_out.v1": "Refund R-1001-1 paid out by hand: 10.000 TND",
    "payment.voided.v1": "Card authorization released: 44.535 TND (order cancelled)",
    "payment.ledger_violation.v1": "Payment ledger problem: captured more than authorized",
    "fulfillment.stock_reserved.v1": "Stock reserved: MUG x2, CAP x1",
    "fulfillment.out_of_stock.v1": "Out of stock: MUG (2 requested, 1 available)",
    "fulfillment.stock_released.v1": "Stock released: MUG x2, CAP x1",
    "fulfillment.status_changed.v1": "Fulfillment: Unfulfilled -> Fulfilled",
    "fulfillment.shipment_created.v1": "Shipment 1001-S1 created by Ana (staff): MUG x2 (sandbox TRK123)",
    "fulfillment.shipment_status_changed.v1": "Shipment 1001-S1 delivered",
    "fulfillment.shipment_edited.v1": "Shipment 1001-S1 edited by Ana (staff): tracking number",
    "fulfillment.label_void_failed.v1": "Label of shipment 1001-S1 not voided: already in transit",
    "fulfillment.return_recorded.v1": "Return recorded by Ana (staff): MUG x2 (restocked MUG x2)",
}


def test_the_timeline_subscribes_to_every_type_of_the_three_contracts_but_stock_levels() -> None:
    taken = [t for t in EVERY_TYPE if t not in NOT_ON_TIMELINE]
    assert list(NOT_ON_TIMELINE) == ["fulfillment.stock_changed.v1"]
    assert sorted(t for types in STORY_EVENT_TYPES.values() for t in types) == sorted(taken)
    assert set(SUMMARIES) == set(taken)
    assert set(SAMPLES) == set(EVERY_TYPE) and set(EXPECTED) == set(taken)  # a new type needs a sample and words


@pytest.mark.parametrize("event_type", [t for t in EVERY_TYPE if t not in NOT_ON_TIMELINE])
def test_every_event_type_has_its_summary_actor_and_time(event_type: str) -> None:
    env = envelope(SAMPLES[event_type], sequence=4)
    row = entry_of(env, SAMPLES[event_type])
    assert row is not None
    assert row["summary"] == EXPECTED[event_type]
    assert row["at"] == AT and row["order_id"] == ORDER_ID and row["kind"] == event_type
    assert row["source"] == {"order": "orders", "payment": "payments", "refund": "payments"}.get(
        event_type.split(".")[0], "fulfillment")
    assert row["actor"]["name"] == ("Payments" if row["source"] == "payments" else "Ana")
    assert row["sequence"] == 4
    TimelineEntry.model_validate(row)  # what the RPC answers


def test_a_stage_change_gives_its_reason_and_a_test_order_says_so() -> None:
    held = changed(SAMPLES["order.stage_changed.v1"], from_stage="confirmed", to_stage="on_hold",
                   reason="out_of_stock")
    row = entry_of(envelope(held), held)
    assert row is not None and row["summary"] == "Stage: confirmed -> on_hold by Ana (staff) (out of stock)"
    assert row["data"] == {"from_stage": "confirmed", "to_stage": "on_hold", "to_stage_label": "On Hold",
                           "reason": "out_of_stock"}
    placed = changed(SAMPLES["order.placed.v1"], test=True)
    row = entry_of(envelope(placed), placed)
    assert row is not None and row["summary"].endswith("(test order)")


def test_a_stock_change_is_not_on_any_timeline_even_for_an_order() -> None:
    for order_id in (None, uuid.UUID(int=9)):
        stock = changed(SAMPLES["fulfillment.stock_changed.v1"], order_id=order_id, reason="reserved")
        assert entry_of(envelope(stock), stock) is None


def test_a_message_status_is_an_entry_with_a_masked_recipient() -> None:
    entry = message_entry({
        "message_id": uuid.UUID(int=3), "kind": "order_stage_changed", "channel": "whatsapp",
        "recipient": "+919845012345", "redirected": False, "from_status": "sent", "status": "delivered",
        "reason": None, "source": "receipt", "at": datetime(2024, 5, 1, 11, 0, tzinfo=UTC),
    })
    assert entry["summary"] == 'WhatsApp "Order status changed" to +9198••••••45 delivered'
    assert entry["kind"] == "message.delivered" and entry["source"] == "notifications"
    assert "+919845012345" not in str(entry)
    failed = message_entry({
        "message_id": uuid.UUID(int=4), "kind": "new_order_staff", "channel": "email", "recipient": "shop@example.com",
        "redirected": True, "from_status": "retrying", "status": "failed", "reason": "550 mailbox unavailable",
        "source": "sender", "at": datetime(2024, 5, 1, 11, 0, tzinfo=UTC),
    })
    assert failed["summary"] == ('E-mail "New order (to the store)" to s•••@example.com (test recipient) failed: '
                                 "550 mailbox unavailable")
    TimelineEntry.model_validate(failed)
