"""Staff alerts (notifications ``usecases.alerts``): which events raise which alert kind, in the merchant's words
with the order number; the stream's reader refuses an unknown kind by name.

Also holds one sample of every event type of orders, payments and fulfillment, as their services publish them
(the timeline's unit tests use them too)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.fulfillment.contracts import events as fev
from services.notifications.contracts.vocabulary import AlertKind
from services.notifications.usecases.alerts import ALERT_RULES, _kinds, alerts_for
from services.orders.contracts import events as oev
from services.orders.contracts.schemas import Actor
from services.payments.contracts import events as pev
from shared.envelope import Envelope, EventModel, source_for
from shared.errors import InvalidRequest

pytestmark = pytest.mark.unit

ORDER_ID = uuid.UUID("6f1c1f55-3a2b-4c8e-9a51-0d0c1b2a3f4e")
AT = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
ANA = Actor(type="staff", id="ana", name="Ana")
CUSTOMER = {"name": "Asha Rao", "phone": "+91 98450 12345", "email": "asha@example.com"}
ADDRESS = {"line1": "12 MG Road", "city": "Bengaluru", "country": "IN"}


def order(**kw: Any) -> dict[str, Any]:
    return {"order_id": ORDER_ID, "number": 1001, "test": False, "version": 2, "at": AT, "actor": ANA, **kw}


def pay(**kw: Any) -> dict[str, Any]:
    return {"order_id": ORDER_ID, "number": 1001, "test": False, "at": AT, "currency": "TND", **kw}


def ful(**kw: Any) -> dict[str, Any]:
    return {"order_id": ORDER_ID, "number": 1001, "test": False, "at": AT, "actor": ANA, **kw}


def shipment(status: str = "shipped") -> fev.ShipmentSummary:
    return fev.ShipmentSummary(
        shipment_id=uuid.UUID(int=7), number="1001-S1", kind="carrier", shipping_point="local", status=status,
        carrier="sandbox", tracking_number="TRK123", expected_delivery=date(2024, 5, 3),
        lines=[fev.LineQuantity(line_id="1", sku="MUG", quantity=2)])


LINES = [fev.LineQuantity(line_id="1", sku="MUG", quantity=2), fev.LineQuantity(line_id="2", sku="CAP", quantity=1)]
ITEMS = [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "10.000", "line_total": "20.000"},
         {"sku": "CAP", "name": "Cap", "quantity": 1, "unit_price": "24.535", "line_total": "24.535"}]
TOTALS = {"subtotal": "44.535", "shipping": "0", "discount": "0", "tax": "0", "total": "44.535"}

SAMPLES: dict[str, EventModel] = {e.event_type: e for e in [
    oev.OrderPlaced(**order(version=1), channel="whatsapp", stage="placed", customer=CUSTOMER, items=ITEMS,
                    currency="TND", totals=TOTALS, placed_at=AT),
    oev.OrderStageChanged(**order(), from_stage="approved", to_stage="processed"),
    oev.OrderAddressSet(**order(), address=ADDRESS),
    oev.OrderPaymentMethodSet(**order(), method="cash_on_delivery", paid=False),
    oev.OrderCustomerNoteSet(**order(), note="Please ring twice"),
    oev.OrderCustomerChanged(**order(), customer={"name": "Ravi Rao"}, previous=CUSTOMER),
    oev.OrderNoteAdded(**order(), note_id=uuid.UUID(int=1), text="Gift wrap it"),
    oev.OrderNoteEdited(**order(), note_id=uuid.UUID(int=1), text="Gift wrap it in red", previous_text="Gift wrap it"),
    oev.OrderNoteDeleted(**order(), note_id=uuid.UUID(int=1)),
    pev.PaymentStatusChanged(**pay(), status="paid", previous_status="unpaid", captured=Decimal("44.535"),
                             refunded=Decimal(0), balance_due=Decimal(0), overpaid=Decimal(0)),
    pev.PaymentLinkCreated(**pay(), payment_id="pay_1", link_id="lnk_1", url="https://pay.example/l/1",
                           amount=Decimal("44.535")),
    pev.PaymentReceived(**pay(), payment_id="pay_1", method="card", amount=Decimal("44.535")),
    pev.PaymentFailed(**pay(), payment_id="pay_1", amount=Decimal("44.535"), decline_code="insufficient_funds"),
    pev.RefundCompleted(**pay(), reference="R-1001-1", amount=Decimal("10")),
    pev.RefundPaidOut(**pay(), reference="R-1001-1", amount=Decimal("10")),
    pev.PaymentVoided(**pay(), payment_id="pay_1", amount=Decimal("44.535"), reason="order_cancelled"),
    pev.PaymentLedgerViolation(**pay(), reason="captured more than authorized"),
    fev.StockReserved(**ful(), lines=LINES),
    fev.OutOfStock(**ful(), lines=[fev.ShortLine(line_id="1", sku="MUG", requested=2, available=1)]),
    fev.StockReleased(**ful(), lines=LINES),
    fev.FulfillmentStatusChanged(**ful(), from_status="unfulfilled", to_status="fulfilled", ordered=3,
                                 handed_over=3, delivered=0, returned=0, shipments=[shipment()]),
    fev.ShipmentCreated(**ful(), shipment=shipment("awaiting_shipment")),
    fev.ShipmentStatusChanged(**ful(), shipment=shipment("delivered"), from_status="in_transit",
                              to_status="delivered"),
    fev.ShipmentEdited(**ful(), shipment=shipment(), changed=["tracking_number"]),
    fev.LabelVoidFailed(**ful(), shipment=shipment(), reason="already_in_transit"),
    fev.ReturnRecorded(**ful(), return_id=uuid.UUID(int=9), lines=LINES[:1], restocked=LINES[:1]),
    fev.StockChanged(sku="MUG", location="main", on_hand=10, reserved=2, available=8, delta_on_hand=0,
                     delta_reserved=2, reason="reserved for order #1001", order_id=ORDER_ID, at=AT, actor=ANA),
]}
"""Event type -> a sample event."""


def envelope(event: EventModel, *, sequence: int = 1, source: str | None = None,
             event_id: uuid.UUID | None = None) -> Envelope:
    service = source or {"order": "orders", "payment": "payments", "refund": "payments"}.get(
        event.event_type.split(".")[0], "fulfillment")
    subject = str(getattr(event, "order_id", None) or getattr(event, "sku", "x"))
    env = Envelope(id=event_id or uuid.uuid4(), source=source_for(service), type=event.event_type, subject=subject,
                   sequence=sequence, correlationid=subject, causationid="test", data=event.model_dump(mode="json"))
    return env


# ------------------------------------------------------------------------------------------------ tests
def changed(event: EventModel, **update: Any) -> Any:
    """The event with some fields changed, validated as a consumer reads it."""
    return type(event).model_validate({**event.model_dump(), **update})


def kinds_of(event: EventModel) -> list[AlertKind]:
    return [a.kind for a in alerts_for(event.event_type, event)]


def test_which_events_raise_which_alert() -> None:
    raised = {t: kinds_of(e) for t, e in SAMPLES.items() if kinds_of(e)}
    assert raised == {
        "order.placed.v1": [AlertKind.new_order],
        "order.stage_changed.v1": [AlertKind.stage_change],
        "payment.status_changed.v1": [AlertKind.payment_update],
        "fulfillment.out_of_stock.v1": [AlertKind.out_of_stock],
        "fulfillment.label_void_failed.v1": [AlertKind.label_void_failed],
    }  # a shipment delivered raises nothing; a failed delivery does (below)
    assert set(ALERT_RULES) == set(raised) | {"fulfillment.shipment_status_changed.v1"}


def test_a_new_order_names_its_number_customer_total_and_channel() -> None:
    (alert,) = alerts_for("order.placed.v1", SAMPLES["order.placed.v1"])
    assert alert.title == "New order #1001"
    assert alert.text == "Asha Rao ordered 3 items for 44.535 TND (whatsapp)."


def test_a_test_order_says_so() -> None:
    placed = changed(SAMPLES["order.placed.v1"], test=True)
    assert alerts_for("order.placed.v1", placed)[0].title == "New test order #1001"


def test_a_stage_change_and_a_hold() -> None:
    moved = SAMPLES["order.stage_changed.v1"]
    (alert,) = alerts_for(moved.event_type, moved)
    assert (alert.title, alert.text) == ("Order #1001 is Processed", "Approved -> Processed by Ana (staff).")
    held = changed(moved, from_stage="confirmed", to_stage="on_hold", reason="out_of_stock")
    (alert,) = alerts_for(held.event_type, held)
    assert alert.kind is AlertKind.order_held  # instead of a stage_change: one alert per move
    assert alert.title == "Order #1001 is on hold"
    assert alert.text.startswith("Confirmed -> On Hold by Ana (staff): out of stock.")


def test_a_payment_update_says_what_moved_and_what_is_due() -> None:
    event = SAMPLES["payment.status_changed.v1"]
    (alert,) = alerts_for(event.event_type, event)
    assert alert.title == "Payment update on order #1001: paid"
    assert alert.text == "Payment unpaid -> paid. Captured 44.535 TND, due 0.000 TND."


def test_out_of_stock_names_the_short_skus() -> None:
    event = SAMPLES["fulfillment.out_of_stock.v1"]
    (alert,) = alerts_for(event.event_type, event)
    assert alert.title == "Out of stock for order #1001"
    assert "MUG (2 requested, 1 available)" in alert.text


def test_only_a_failed_delivery_of_a_shipment_alerts() -> None:
    delivered = SAMPLES["fulfillment.shipment_status_changed.v1"]
    assert alerts_for(delivered.event_type, delivered) == []
    failed = changed(delivered, to_status="delivery_failed", reason="address not found",
                     shipment=shipment("delivery_failed"))
    (alert,) = alerts_for(failed.event_type, failed)
    assert alert.kind is AlertKind.delivery_failed
    assert alert.title == "Delivery failed: shipment 1001-S1"
    assert "shipment 1001-S1 (sandbox TRK123) of order #1001 could not be delivered: address not found" in alert.text


def test_a_refused_label_void_alerts_with_the_carriers_reason() -> None:
    event = SAMPLES["fulfillment.label_void_failed.v1"]
    (alert,) = alerts_for(event.event_type, event)
    assert alert.title == "Label not voided: shipment 1001-S1"
    assert "already in transit" in alert.text


def test_the_stream_filter_reads_a_list_or_a_comma_string_and_refuses_unknown_kinds() -> None:
    assert _kinds(None) is None
    assert _kinds("new_order, order_held") == ["new_order", "order_held"]
    assert _kinds(["payment_update"]) == ["payment_update"]
    assert _kinds("") is None
    with pytest.raises(InvalidRequest) as refused:
        _kinds("new_order,new_orders")
    assert refused.value.extra["errors"][0]["field"] == "kinds"
    assert "new_orders" in refused.value.extra["errors"][0]["reason"]
