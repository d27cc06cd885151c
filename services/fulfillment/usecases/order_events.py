"""How fulfillment reacts to the order's events (a handler table, applied through the inbox in batches).

* ``order.placed``: fulfillment starts knowing the order and reserves its stock-tracked units, all or nothing
  (``fulfillment.stock_reserved``, or ``fulfillment.out_of_stock`` and nothing reserved).
* ``order.stage_changed``: the stage copy that decides what may be fulfilled; a cancelled, rejected or abandoned
  order releases its reservations and cancels its shipments not yet handed over (voiding carrier labels; a
  refused void is announced as ``fulfillment.label_void_failed``, never ignored).
* ``order.address_set``, ``order.customer_changed``: the copy printed on documents and used as recipient.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

from services.fulfillment import domain, store
from services.fulfillment.carrier import CarrierError, CarrierProvider
from services.fulfillment.contracts import events as ev
from services.fulfillment.contracts.vocabulary import ShipmentStatus
from services.fulfillment.usecases.common import (
    Tx,
    actor_of,
    base,
    batch_levels,
    emit,
    move_shipment,
    refresh_status,
    release,
    reserve,
    summary,
)
from services.orders.contracts import events as order_events
from services.orders.contracts.schemas import Actor, Stage
from shared import inbox, outbox
from shared.catalog import parse_data
from shared.db import Database
from shared.envelope import Envelope, EventModel

log = logging.getLogger(__name__)

CONSUMER = "fulfillment.orders"

OrderHandler = Callable[[Tx, CarrierProvider | None, Any, str], None]


# The orders whose copy a batch wrote at its start (``handle_order_events``), per transaction: (tried, written).
_copied: weakref.WeakKeyDictionary[Tx, tuple[set[UUID], set[UUID]]] = weakref.WeakKeyDictionary()


def handle_order_events(db: Database, carrier: CarrierProvider | None, events: Sequence[Envelope]
                        ) -> list[inbox.Outcome]:
    """Apply a batch of order events in one transaction, each once and in per-order order.

    Before the events are applied one by one, the batch's new order copies are written in one round trip and
    the stock levels of every SKU they order locked in one more (``batch_levels``): each ``order.placed`` then
    costs its reservation statement only. Writing a copy early is harmless for an event the inbox then skips
    (a duplicate): a copy is written once, whoever comes first."""
    placed = {}
    for env in events:
        if env.type == order_events.OrderPlaced.event_type:
            data = parse_data(env)
            assert isinstance(data, order_events.OrderPlaced)
            placed[data.order_id] = order_row(data)
    with db.transaction() as tx, outbox.buffered(tx):
        written = store.insert_orders(tx, list(placed.values()))
        _copied[tx] = (set(placed), written)
        skus = {i["sku"] for oid in written if placed[oid]["stage"] not in CLOSED for i in placed[oid]["items"]}
        try:
            with batch_levels(tx, skus, pipelined=len(written) > 1):
                return inbox.process_batch_in(tx, CONSUMER, events, lambda tx, e: apply_order_event(tx, carrier, e),
                                              types=ORDER_EVENT_TYPES)
        finally:
            _copied.pop(tx, None)


def handle_order_event(db: Database, carrier: CarrierProvider | None, env: Envelope) -> inbox.Outcome:
    return handle_order_events(db, carrier, [env])[0]


def apply_order_event(tx: Tx, carrier: CarrierProvider | None, env: Envelope) -> None:
    data: EventModel = parse_data(env)
    handler = ORDER_EVENT_HANDLERS.get(env.type)
    if handler is not None:
        handler(tx, carrier, data, str(env.id))


def order_row(data: order_events.OrderPlaced) -> dict[str, Any]:
    """The order's copy: lines numbered "1", "2"... in the order placed (as payments numbers them)."""
    items = [
        {"line_id": str(i + 1), "sku": it.sku, "name": it.name, "quantity": it.quantity,
         "unit_price": str(it.unit_price), "line_total": str(it.line_total)}
        for i, it in enumerate(data.items)
    ]
    t = data.totals
    return {
        "order_id": data.order_id, "number": data.number, "test": data.test, "stage": data.stage.value,
        "channel": data.channel.value, "currency": data.currency, "items": items,
        "subtotal": Decimal(t.subtotal), "shipping": Decimal(t.shipping), "discount": Decimal(t.discount),
        "tax": Decimal(t.tax), "total": Decimal(t.total),
        "customer": data.customer.model_dump(mode="json"),
        "address": data.shipping_address.model_dump(mode="json") if data.shipping_address else None,
        "payment_method": data.payment_method.value if data.payment_method else None,
        "customer_note": data.customer_note, "placed_at": data.placed_at,
    }


def order_placed(tx: Tx, carrier: CarrierProvider | None, data: order_events.OrderPlaced, causation: str) -> None:
    row = order_row(data)
    tried, written = _copied.get(tx, (set(), set()))
    if data.order_id in tried:
        if data.order_id not in written:
            return  # seen already
    elif not store.insert_order(tx, row):
        return  # seen already
    if data.stage in domain.CLOSED_STAGES:
        return  # the copy as inserted is all there is
    reserve_order(tx, new_order(row), actor_of(data.actor), causation, fresh=True)


def new_order(row: dict[str, Any]) -> domain.FulfillmentOrder:
    """The order just inserted from its copy, as ``store.load`` would read it back (nothing shipped, returned or
    reserved yet, every field at its default), without reading it back."""
    return domain.FulfillmentOrder(
        order_id=str(row["order_id"]), number=int(row["number"]), test=bool(row["test"]), stage=Stage(row["stage"]),
        currency=row["currency"],
        lines=tuple(domain.OrderLine(i["line_id"], i["sku"], i["name"] or "", int(i["quantity"]),
                                     Decimal(i["unit_price"]), Decimal(i["line_total"])) for i in row["items"]),
    )


def reserve_order(tx: Tx, o: domain.FulfillmentOrder, actor: Actor, causation: str, *, fresh: bool = False) -> None:
    """Reserve, then announce: ``stock_reserved`` (state reserved), or ``out_of_stock`` (nothing reserved).

    ``fresh``: the order was inserted by this transaction with every field at its default, so only a changed
    ``reservation`` is written (with the reservation statement itself when the plan holds)."""
    plan = reserve(tx, o, actor, causation, state="reserved" if fresh else None)
    if plan is None:
        o.reservation = "not_tracked"
    elif plan.ok:
        o.reservation = "reserved"
        lines: dict[tuple[str, str], int] = {}
        for a in plan.allocations:
            lines[(a.line_id, a.sku)] = lines.get((a.line_id, a.sku), 0) + a.quantity
        emit(tx, o, ev.StockReserved(**base(o, actor), lines=[
            ev.LineQuantity(line_id=lid, sku=sku, quantity=q) for (lid, sku), q in lines.items()]), causation)
    else:
        o.reservation = "out_of_stock"
        emit(tx, o, ev.OutOfStock(**base(o, actor), lines=[
            ev.ShortLine(line_id=s.line_id, sku=s.sku, requested=s.requested, available=s.available)
            for s in plan.shortages]), causation)
    if not fresh:
        store.save_order(tx, o)
    elif o.reservation == "out_of_stock":
        store.set_fields(tx, UUID(o.order_id), reservation=o.reservation)


def stage_changed(tx: Tx, carrier: CarrierProvider | None, data: order_events.OrderStageChanged,
                  causation: str) -> None:
    o = store.find(tx, data.order_id, for_update=True)
    if o is None:
        log.warning("stage change of order %s, which fulfillment never saw placed; ignored", data.order_id)
        return
    o.stage = data.to_stage
    store.set_fields(tx, data.order_id, stage=data.to_stage.value)
    actor = actor_of(data.actor)
    if data.to_stage in domain.CLOSED_STAGES:
        close_order(tx, carrier, o, actor, causation, data.to_stage.value)
    refresh_status(tx, o, actor, causation)


def close_order(tx: Tx, carrier: CarrierProvider | None, o: domain.FulfillmentOrder, actor: Actor, causation: str,
                stage: str) -> None:
    """Cancelled, rejected or abandoned: cancel every shipment not yet handed over (a carrier label is voided
    first; a refused void stays as it is and is announced to staff), then release what is still reserved."""
    for s in o.shipments:
        if s.handed_over or not domain.is_forward(s.status, ShipmentStatus.canceled):
            continue
        if s.label_id:
            if carrier is None:
                raise RuntimeError("no carrier to void a label with")
            try:
                result = carrier.void_label(s.label_id, idempotency_key=f"void:{s.id}")
            except CarrierError as exc:
                if exc.retryable:
                    raise  # the inbox retries the event later; the same key replays at the carrier
                emit(tx, o, ev.LabelVoidFailed(**base(o, actor), shipment=summary(s), reason=exc.code), causation)
                continue
            if not result.voided:
                emit(tx, o, ev.LabelVoidFailed(**base(o, actor), shipment=summary(s),
                                               reason=result.reason or "refused"), causation)
                continue
        move_shipment(tx, o, s, ShipmentStatus.canceled, actor, causation, source="system",
                      notify=False, reason=f"order {stage}")
    released = release(tx, o, actor, causation, f"order #{o.number} {stage}")
    if released:
        o.reservation = "released"
        emit(tx, o, ev.StockReleased(**base(o, actor), lines=released), causation)


def address_set(tx: Tx, carrier: CarrierProvider | None, data: order_events.OrderAddressSet, causation: str) -> None:
    store.set_fields(tx, data.order_id, address=data.address.model_dump(mode="json"))


def customer_changed(tx: Tx, carrier: CarrierProvider | None, data: order_events.OrderCustomerChanged,
                     causation: str) -> None:
    store.set_fields(tx, data.order_id, customer=data.customer.model_dump(mode="json"))


CLOSED = {s.value for s in domain.CLOSED_STAGES}

ORDER_EVENT_HANDLERS: dict[str, OrderHandler] = {
    order_events.OrderPlaced.event_type: order_placed,
    order_events.OrderStageChanged.event_type: stage_changed,
    order_events.OrderAddressSet.event_type: address_set,
    order_events.OrderCustomerChanged.event_type: customer_changed,
}
"""What fulfillment does on each order event it binds."""

ORDER_EVENT_TYPES: tuple[str, ...] = tuple(sorted(ORDER_EVENT_HANDLERS))
"""What fulfillment subscribes to: exactly the types of ``ORDER_EVENT_HANDLERS``."""
