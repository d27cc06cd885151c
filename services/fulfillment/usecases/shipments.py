"""Shipments staff make and move by hand: Manual Fulfill (one shipment per fulfillment: split delivery),
Edit Shipment, Mark Delivered, Void/Cancel (a carrier label is voided at the carrier first), Mark Packed, and
the fulfillment of an order as a whole.

Every check that decides whether units may be shipped is made on the order's row locked in the transaction
that creates the shipment, so a screen that still shows an order the customer cancelled cannot fulfil it.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.fulfillment import domain, store
from services.fulfillment.carrier import CarrierError, CarrierProvider
from services.fulfillment.contracts import events as ev
from services.fulfillment.contracts.schemas import CancelShipment, EditShipment, ManualFulfill, MarkDelivered
from services.fulfillment.contracts.vocabulary import ShipmentKind, ShipmentStatus, ShippingPoint
from services.fulfillment.usecases import views
from services.fulfillment.usecases.common import (
    actor_of,
    base,
    carrier_failed,
    emit,
    move_shipment,
    now,
    read,
    refresh_status,
    refuse,
    summary,
)
from shared.db import Database
from shared.errors import NotAllowedInThisState, NotFound, parse


def get_fulfillment(db: Database, order_id: str) -> dict[str, Any]:
    with read(db) as tx:
        return views.fulfillment(tx, store.load(tx, order_id)).model_dump(mode="json")


def _shipment_order(tx: Any, shipment_id: str, *, for_update: bool) -> tuple[domain.FulfillmentOrder, domain.Shipment]:
    oid = store.shipment_order_id(tx, shipment_id)
    if oid is None:
        raise NotFound(f"No shipment {shipment_id}.", shipment_id=str(shipment_id))
    o = store.load(tx, oid, for_update=for_update)
    return o, o.shipment(str(uuid.UUID(str(shipment_id))))


def get_shipment(db: Database, shipment_id: str) -> dict[str, Any]:
    with read(db) as tx:
        o, s = _shipment_order(tx, shipment_id, for_update=False)
        return views.shipment_with_tracking(tx, o, s).model_dump(mode="json")


def mark_packed(db: Database, order_id: str, actor: Any) -> dict[str, Any]:
    """The order is packed and ready for the carrier: its status becomes dispatched (nothing handed over yet)."""
    who = actor_of(actor)
    with db.transaction() as tx:
        o = store.load(tx, order_id, for_update=True)
        why = o.why_not_fulfill()
        if o.stage not in domain.PACKABLE_STAGES or why is not None:
            refuse(domain.Refused(why or f"Order #{o.number} is {o.stage.value}: only an approved or processed "
                                  "order can be marked packed.", field="order_stage", code="cannot_pack"),
                   order_id=o.order_id)
        if not o.packed:
            o.packed = True
            refresh_status(tx, o, who, f"packed:{order_id}")
        return views.fulfillment(tx, o).model_dump(mode="json")


def new_shipment(o: domain.FulfillmentOrder, lines: list[domain.ShipmentLine], *, kind: ShipmentKind,
                 shipping_point: ShippingPoint, location: str, **fields: Any) -> domain.Shipment:
    rank = o.next_rank()
    at = now()
    s = domain.Shipment(id=str(uuid.uuid4()), order_id=o.order_id, rank=rank, number=f"{o.number}-S{rank}",
                        kind=kind, shipping_point=shipping_point, status=ShipmentStatus.awaiting_shipment,
                        location=location, lines=lines, created_at=at, updated_at=at, **fields)
    o.shipments.append(s)
    return s


def create_shipment(db: Database, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
    """Manual Fulfill: one shipment of the chosen units (default: every unit still unfulfilled)."""
    cmd = parse(ManualFulfill, command, "fulfillment")
    who = actor_of(actor)
    causation = f"fulfill:{uuid.uuid4()}"
    with db.transaction() as tx:
        o = store.load(tx, order_id, for_update=True)
        try:
            lines = o.check_fulfill([(ln.line, ln.quantity) for ln in cmd.lines])
        except domain.Refused as exc:
            refuse(exc, order_id=o.order_id)
        s = new_shipment(o, lines, kind=ShipmentKind.manual, shipping_point=cmd.shipping_point,
                         location=cmd.location, carrier=cmd.carrier, tracking_number=cmd.tracking_number,
                         tracking_url=cmd.tracking_url, expected_delivery=cmd.expected_delivery)
        store.insert_shipment(tx, s)
        store.add_tracking(tx, s.id, s.status, s.created_at, source="staff", applied=True,
                           description="shipment created")
        emit(tx, o, ev.ShipmentCreated(**base(o, who), shipment=summary(s), notify_customer=cmd.notify_customer),
             causation)
        if cmd.shipped:
            move_shipment(tx, o, s, ShipmentStatus.shipped, who, causation, source="staff",
                          notify=cmd.notify_customer)
        else:
            refresh_status(tx, o, who, causation)
        return views.shipment_with_tracking(tx, o, s).model_dump(mode="json")


def edit_shipment(db: Database, shipment_id: str, command: Any, actor: Any) -> dict[str, Any]:
    """Edit Shipment (manual only): carrier, tracking number and URL, expected delivery, and the status
    (forward only). A carrier shipment refuses any edit (409 naming the field)."""
    cmd = parse(EditShipment, command, "shipment edit")
    who = actor_of(actor)
    causation = f"edit:{uuid.uuid4()}"
    given = cmd.model_dump(exclude_unset=True)
    given.pop("notify_customer", None)
    with db.transaction() as tx:
        o, s = _shipment_order(tx, shipment_id, for_update=True)
        try:
            for name in given:
                domain.check_manual_edit(s, name)
            if cmd.status is not None:
                domain.check_move(s, cmd.status)
        except domain.Refused as exc:
            refuse(exc, shipment_id=s.id)
        changed = []
        for name in ("carrier", "tracking_number", "tracking_url", "expected_delivery"):
            if name in given and getattr(s, name) != given[name]:
                setattr(s, name, getattr(cmd, name))
                changed.append(name)
        if changed:
            s.updated_at = now()
            store.update_shipment(tx, s)
            emit(tx, o, ev.ShipmentEdited(**base(o, who), shipment=summary(s), changed=changed,
                                          notify_customer=cmd.notify_customer), causation)
        if cmd.status is not None and cmd.status is not s.status:
            move_shipment(tx, o, s, cmd.status, who, causation, source="staff", notify=cmd.notify_customer)
        return views.shipment_with_tracking(tx, o, s).model_dump(mode="json")


def mark_delivered(db: Database, shipment_id: str, command: Any, actor: Any) -> dict[str, Any]:
    """Mark as Delivered (manual; a pickup shipment is then picked up by the customer)."""
    cmd = parse(MarkDelivered, command or {}, "delivery")
    who = actor_of(actor)
    with db.transaction() as tx:
        o, s = _shipment_order(tx, shipment_id, for_update=True)
        try:
            domain.check_manual_edit(s, "status")
            domain.check_move(s, ShipmentStatus.delivered)
        except domain.Refused as exc:
            refuse(exc, shipment_id=s.id)
        if s.status is not ShipmentStatus.delivered:
            move_shipment(tx, o, s, ShipmentStatus.delivered, who, f"delivered:{s.id}", source="staff",
                          notify=cmd.notify_customer,
                          description="picked up in store" if s.shipping_point is ShippingPoint.pickup else None)
        return views.shipment_with_tracking(tx, o, s).model_dump(mode="json")


def cancel_shipment(db: Database, carrier: CarrierProvider | None, shipment_id: str, command: Any, actor: Any
                    ) -> dict[str, Any]:
    """Void/Cancel: the units are unfulfilled again (still reserved for the order). Never after delivery. A
    carrier label is voided at the carrier first; if the carrier refuses, the shipment stays as it is,
    ``fulfillment.label_void_failed`` tells staff, and the answer is 409 with the carrier's reason."""
    cmd = parse(CancelShipment, command or {}, "cancellation")
    who = actor_of(actor)
    causation = f"cancel:{shipment_id}"
    with read(db) as tx:
        o, s = _shipment_order(tx, shipment_id, for_update=False)
    try:
        domain.check_cancel(s)
    except domain.Refused as exc:
        refuse(exc, shipment_id=s.id)
    if s.label_id:
        if carrier is None:
            raise RuntimeError("no carrier configured to void a label")
        try:
            result = carrier.void_label(s.label_id, idempotency_key=f"void:{s.id}")
        except CarrierError as exc:
            if exc.retryable:
                carrier_failed(exc, "void the label")
            result_voided, reason = False, exc.code
        else:
            result_voided, reason = result.voided, result.reason or "refused"
        if not result_voided:
            with db.transaction() as tx:
                o, s = _shipment_order(tx, shipment_id, for_update=True)
                emit(tx, o, ev.LabelVoidFailed(**base(o, who), shipment=summary(s), reason=reason), causation)
            raise NotAllowedInThisState(
                f"The carrier refused to void the label of shipment {s.number} ({reason}): it stays as it is.",
                field="label", carrier_reason=reason, shipment_id=s.id)
    with db.transaction() as tx:
        o, s = _shipment_order(tx, shipment_id, for_update=True)
        if s.status is not ShipmentStatus.canceled:
            try:
                domain.check_cancel(s)
            except domain.Refused as exc:
                refuse(exc, shipment_id=s.id)
            move_shipment(tx, o, s, ShipmentStatus.canceled, who, causation, source="staff", notify=False,
                          reason=cmd.reason or "cancelled by staff")
        return views.shipment_with_tracking(tx, o, s).model_dump(mode="json")
