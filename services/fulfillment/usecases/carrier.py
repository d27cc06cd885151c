"""Carrier Fulfill: rates, buying a label (a carrier shipment), its printable label, and the carrier's signed
tracking webhooks that move carrier shipments (forward only: a late or duplicated update is recorded with
``applied=false`` and changes nothing).

Buying a label calls the carrier BEFORE the transaction that records the shipment (no row lock held over the
network), with an idempotency key derived from the order and the client's Idempotency-Key: a retry after a
lost answer gets the same label from the carrier and, once recorded, the same shipment from
``label_purchases``. If the order can no longer be fulfilled when the label comes back (cancelled meanwhile),
the label is voided at once.
"""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

from services.fulfillment import domain, store
from services.fulfillment.carrier import CarrierError, CarrierProvider, RateRequest
from services.fulfillment.contracts import events as ev
from services.fulfillment.contracts.errors import CarrierWebhookRejected
from services.fulfillment.contracts.schemas import (
    BuyLabel,
    CarrierFulfill,
    DocumentFile,
    RateList,
    RateView,
    WebhookAck,
)
from services.fulfillment.contracts.vocabulary import ShipmentKind, ShipmentStatus, ShippingPoint
from services.fulfillment.settings import get_settings
from services.fulfillment.usecases import views
from services.fulfillment.usecases.common import (
    actor_of,
    base,
    carrier_failed,
    emit,
    move_shipment,
    read,
    refresh_status,
    refuse,
    summary,
)
from services.fulfillment.usecases.shipments import _shipment_order, new_shipment
from shared.db import Database
from shared.errors import NotFound, parse
from shared.money import quantize

log = logging.getLogger(__name__)

CARRIER_ACTOR = {"type": "integration", "id": "carrier", "name": "Carrier"}


def store_party() -> dict[str, Any]:
    """The store as the default shipper: ``OMS_STORE_*``."""
    s = get_settings()
    parts = s.store_address_parts()
    address: dict[str, Any] = {"line1": parts[0] if parts else s.store_name,
                               "city": parts[1] if len(parts) > 1 else "-", "country": s.store_country}
    if len(parts) > 2:
        address["postal_code"] = parts[2]
    return {"name": s.store_name, "phone": s.store_phone, "email": s.store_email, "address": address}


def recipient_party(row: dict[str, Any]) -> dict[str, Any]:
    customer = row.get("customer") or {}
    if not row.get("address"):
        refuse(domain.Refused(f"Order #{row['number']} has no shipping address: give a recipient.", field="recipient",
                              code="no_address", conflict=False))
    return {"name": customer.get("name") or "Customer", "phone": customer.get("phone"),
            "email": customer.get("email"), "address": row["address"]}


def _request(o: domain.FulfillmentOrder, row: dict[str, Any], cmd: CarrierFulfill) -> RateRequest:
    shipper = cmd.shipper.model_dump(mode="json") if cmd.shipper else store_party()
    recipient = cmd.recipient.model_dump(mode="json") if cmd.recipient else recipient_party(row)
    return RateRequest(shipper=shipper, recipient=recipient,
                       packages=[p.model_dump(mode="json") for p in cmd.packages], currency=o.currency,
                       declared_value=cmd.declared_value, insurance=cmd.insurance,
                       signature_confirmation=cmd.signature_confirmation, dangerous_goods=cmd.dangerous_goods,
                       drop_off_date=cmd.drop_off_date)


def _check(o: domain.FulfillmentOrder, cmd: CarrierFulfill) -> list[domain.ShipmentLine]:
    try:
        return o.check_fulfill([(ln.line, ln.quantity) for ln in cmd.lines])
    except domain.Refused as exc:
        refuse(exc, order_id=o.order_id)


def carrier_rates(db: Database, carrier: CarrierProvider, order_id: str, command: Any) -> dict[str, Any]:
    cmd = parse(CarrierFulfill, command, "carrier fulfillment")
    with read(db) as tx:
        o = store.load(tx, order_id)
        row = store.order_row(tx, order_id) or {}
    _check(o, cmd)
    try:
        rates = carrier.rates(_request(o, row, cmd))
    except CarrierError as exc:
        carrier_failed(exc, "give rates")
    return RateList(
        rates=[RateView(rate_id=r.rate_id, carrier=r.carrier, service=r.service, amount=quantize(r.amount, r.currency),
                        currency=r.currency, estimated_delivery=r.estimated_delivery, transit_days=r.transit_days)
               for r in rates.rates],
        expires_at=rates.expires_at,
    ).model_dump(mode="json")


def buy_label(db: Database, carrier: CarrierProvider, order_id: str, command: Any, actor: Any,
              idempotency_key: str | None = None) -> dict[str, Any]:
    cmd = parse(BuyLabel, command, "label purchase")
    who = actor_of(actor)
    key = idempotency_key or str(uuid.uuid4())
    with read(db) as tx:
        o = store.load(tx, order_id)
        done = store.label_purchase(tx, uuid.UUID(o.order_id), key)
        if done is not None:
            s = o.shipment(str(done))
            return views.shipment_with_tracking(tx, o, s).model_dump(mode="json")
        row = store.order_row(tx, order_id) or {}
    _check(o, cmd)
    _request(o, row, cmd)  # a missing recipient is refused before anything is bought
    carrier_key = f"label:{o.order_id}:{key}"
    try:
        label = carrier.buy_label(cmd.rate_id, reference=str(o.number), idempotency_key=carrier_key)
    except CarrierError as exc:
        carrier_failed(exc, "sell the label")
    with db.transaction() as tx:
        o = store.load(tx, order_id, for_update=True)
        done = store.label_purchase(tx, uuid.UUID(o.order_id), key)
        if done is not None:  # a concurrent retry recorded it first
            return views.shipment_with_tracking(tx, o, o.shipment(str(done))).model_dump(mode="json")
        refused: domain.Refused | None = None
        try:
            lines = o.check_fulfill([(ln.line, ln.quantity) for ln in cmd.lines])
        except domain.Refused as exc:
            refused = exc
        if refused is None:
            s = new_shipment(o, lines, kind=ShipmentKind.carrier, shipping_point=ShippingPoint.local,
                             location=cmd.location, carrier=label.carrier, service=label.service,
                             tracking_number=label.tracking_number, tracking_url=label.tracking_url,
                             label_id=label.label_id, label_cost=label.amount, label_currency=label.currency)
            store.insert_shipment(tx, s)
            store.record_label_purchase(tx, uuid.UUID(o.order_id), key, s.id)
            store.add_tracking(tx, s.id, s.status, s.created_at, source="carrier", applied=True,
                               description="label created")
            emit(tx, o, ev.ShipmentCreated(**base(o, who), shipment=summary(s), notify_customer=cmd.notify_customer),
                 carrier_key)
            refresh_status(tx, o, who, carrier_key)
            return views.shipment_with_tracking(tx, o, s).model_dump(mode="json")
    # The order changed while the label was bought (cancelled, or the units shipped by someone else).
    try:
        carrier.void_label(label.label_id, idempotency_key=f"void:{label.label_id}")
    except CarrierError:
        log.exception("label %s bought for order %s could not be voided", label.label_id, order_id)
    assert refused is not None
    refuse(refused, order_id=order_id)


def shipment_label(db: Database, carrier: CarrierProvider, shipment_id: str) -> dict[str, Any]:
    with read(db) as tx:
        _o, s = _shipment_order(tx, shipment_id, for_update=False)
    if not s.label_id:
        raise NotFound(f"Shipment {s.number} has no carrier label.", shipment_id=s.id)
    try:
        pdf = carrier.label_pdf(s.label_id)
    except CarrierError as exc:
        carrier_failed(exc, "give the label")
    return DocumentFile(filename=f"label-{s.number}.pdf", content_type="application/pdf", encoding="base64",
                        content=base64.b64encode(pdf).decode()).model_dump(mode="json")


def handle_carrier_webhook(db: Database, carrier: CarrierProvider, body: str, headers: dict[str, str]
                           ) -> dict[str, Any]:
    """A signed tracking update: recorded once per carrier event id; moves the shipment only forward."""
    try:
        update = carrier.verify_webhook(body, headers)
    except CarrierError as exc:
        raise CarrierWebhookRejected(f"The webhook does not verify: {exc}", code=exc.code) from None
    try:
        status = ShipmentStatus(update.status)
    except ValueError:
        raise CarrierWebhookRejected(f"Unknown tracking status {update.status!r}.", code="unknown_status") from None
    with db.transaction() as tx:
        found = store.shipment_by_tracking(tx, update.tracking_number, update.label_id)
        if found is None:
            log.warning("tracking update for unknown parcel %s; ignored", update.tracking_number)
            return WebhookAck(received=True, applied=False).model_dump(mode="json")
        shipment_id, order_id = found
        o = store.load(tx, order_id, for_update=True)
        s = o.shipment(str(shipment_id))
        applies = domain.tracking_applies(s.status, status)
        who = actor_of(CARRIER_ACTOR)
        if not applies:
            store.add_tracking(tx, s.id, status, update.occurred_at, source="carrier", applied=False,
                               description=update.description, location=update.location, event_id=update.event_id)
            return WebhookAck(received=True, applied=False).model_dump(mode="json")
        # a redelivered event id is recorded once: check before moving
        seen = tx.execute("SELECT 1 FROM tracking_events WHERE event_id = %s", (update.event_id,)).fetchone()
        if seen is not None:
            return WebhookAck(received=True, applied=False).model_dump(mode="json")
        move_shipment(tx, o, s, status, who, f"carrier:{update.event_id}", source="carrier", notify=True,
                      reason=update.description if status is ShipmentStatus.delivery_failed else None,
                      description=update.description, location=update.location, at=update.occurred_at,
                      event_id=update.event_id)
        return WebhookAck(received=True, applied=True).model_dump(mode="json")

