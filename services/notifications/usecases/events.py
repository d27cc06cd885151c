"""How notifications reacts to the other services' events: handler tables, one per source service (one
subscription each), applied through the inbox in batches.

* orders: ``order.placed`` (the order copy; the order_placed message; the new-order e-mail to the store),
  ``order.stage_changed`` (the copy's stage; order_stage_changed for the chosen stages),
  ``order.customer_changed`` and ``order.address_set`` (the copy);
* payments: payment link, payment received, payment failed, refund completed;
* fulfillment: shipment created, shipment status changed and shipment edited (honouring ``notify_customer``),
  return recorded.

Each message is a row (status ``queued``) committed with the batch; the sender sends it after the commit. One
message per (event id, kind, channel, recipient): the event delivered twice finds its row there already.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from services.fulfillment.contracts import events as fulfillment_events
from services.notifications import domain, store
from services.notifications.contracts.vocabulary import MessageChannel
from services.notifications.settings import NotificationSettings
from services.notifications.usecases.common import (
    Tx,
    announce,
    batch_of,
    batch_writes,
    log,
    now,
    preferences,
    store_email,
    test_recipient,
)
from services.notifications.usecases.context import kind_context, order_context
from services.orders.contracts import events as order_events
from services.payments.contracts import events as payment_events
from shared import inbox, outbox
from shared.catalog import parse_data
from shared.db import Database
from shared.envelope import Envelope

Handler = Callable[[Tx, NotificationSettings, Envelope], None]


# ------------------------------------------------------------------------------------------------ enqueueing
def enqueue(tx: Tx, settings: NotificationSettings, prefs: domain.Preferences, order: Mapping[str, Any],
            event_id: str, kind: str, extra: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The messages of one kind for one event: queued rows (none when the event was handled already)."""
    context = {**order_context(order, settings), **extra}
    language = order.get("language") or prefs.language
    if kind == domain.STAFF_KIND:
        routes = [domain.Route(MessageChannel.email, store_email(prefs, settings), False)]
    else:
        customer = order["customer"] or {}
        plan = domain.channel_plan(order["channel"], customer.get("phone"), customer.get("email"),
                                   prefs.kind(kind).channels)
        if not plan:
            log.info("order #%s: no address on any channel for %s; nothing sent", order["number"], kind)
            return []
        channel, address = plan[0]
        r = domain.route(channel, address, test=bool(order["test"]), test_recipient=test_recipient(prefs, settings),
                         sandbox_channels=settings.sandbox_channels())
        routes = [r] if r else []
    created = []
    for r in routes:
        row = new_message(tx, event_id, kind, r, language, order, context, fallback_of=None)
        if row is not None:
            created.append(row)
    return created


def new_message(tx: Tx, event_id: str | None, kind: str, r: domain.Route, language: str, order: Mapping[str, Any],
                context: Mapping[str, Any], fallback_of: Any) -> dict[str, Any] | None:
    key = domain.message_key(event_id or fallback_of, kind, r.channel.value, r.recipient)
    at = now()
    new = {
        "id": key, "event_id": event_id, "kind": kind, "channel": r.channel.value, "recipient": r.recipient,
        "language": language, "order_id": order["order_id"], "number": order["number"], "test": order["test"],
        "redirected": r.redirected, "status": "queued", "idempotency_key": key, "attempts": 0,
        "next_attempt_at": at, "context": dict(context), "fallback_of": fallback_of,
    }
    batch = batch_of(tx)
    if batch is not None and fallback_of is None:
        batch.messages.append(new)  # written with the batch's others (``batch_writes``)
        row: dict[str, Any] | None = new
    else:
        row = store.insert_message(tx, new)
    if row is not None:
        announce(tx, row, None, "queued", None, at, "event")
    return row


def notify(tx: Tx, settings: NotificationSettings, env: Envelope, facts: domain.EventFacts,
           order: Mapping[str, Any] | None = None) -> None:
    """The messages an event calls for. ``order``: the copy, when the caller has just written it."""
    order = order or store.get_order(tx, env.data["order_id"])
    if order is None:
        log.warning("%s for order %s, which notifications never saw placed; nothing sent", env.type,
                    env.data.get("order_id"))
        return
    prefs = preferences(tx, settings)
    for kind in domain.kinds_for(facts, prefs):
        enqueue(tx, settings, prefs, order, str(env.id), kind, kind_context(kind, env.data, order))


# ------------------------------------------------------------------------------------------------ orders
def order_copy(env: Envelope) -> dict[str, Any]:
    """The row of the order's copy that ``order.placed`` carries."""
    d = parse_data(env)
    assert isinstance(d, order_events.OrderPlaced)
    return {
        "order_id": d.order_id, "number": d.number, "test": d.test, "channel": d.channel.value,
        "stage": d.stage.value, "customer": d.customer.model_dump(mode="json"),
        "address": d.shipping_address.model_dump(mode="json") if d.shipping_address else None,
        "currency": d.currency, "total": d.totals.total, "placed_at": d.placed_at,
        "items": [{"sku": i.sku, "name": i.name, "quantity": i.quantity, "line_total": str(i.line_total)}
                  for i in d.items],
    }


def copy_placed_orders(tx: Tx, events: Sequence[Envelope]) -> None:
    """A batch's new order copies, written before its events are applied, in one round trip. Harmless for an
    event the inbox then skips (a duplicate): the copy of an order is written once, whoever comes first."""
    batch = batch_of(tx)
    placed = [order_copy(env) for env in events if env.type == order_events.OrderPlaced.event_type]
    if batch is not None and placed:
        batch.copies.update((str(c["order_id"]), c) for c in store.insert_orders(tx, placed))


def order_placed(tx: Tx, settings: NotificationSettings, env: Envelope) -> None:
    batch = batch_of(tx)
    copy = batch.copies.get(str(env.data["order_id"])) if batch is not None else None
    if copy is None:
        copy = store.insert_order(tx, order_copy(env))
    notify(tx, settings, env, domain.EventFacts(env.type), copy)


def stage_changed(tx: Tx, settings: NotificationSettings, env: Envelope) -> None:
    d = order_events.OrderStageChanged.model_validate(env.data)
    store.set_order_fields(tx, d.order_id, stage=d.to_stage.value)
    notify(tx, settings, env, domain.EventFacts(env.type, to_stage=d.to_stage.value))


def customer_changed(tx: Tx, settings: NotificationSettings, env: Envelope) -> None:
    d = order_events.OrderCustomerChanged.model_validate(env.data)
    store.set_order_fields(tx, d.order_id, customer=d.customer.model_dump(mode="json"))


def address_set(tx: Tx, settings: NotificationSettings, env: Envelope) -> None:
    d = order_events.OrderAddressSet.model_validate(env.data)
    store.set_order_fields(tx, d.order_id, address=d.address.model_dump(mode="json"))


def plain(tx: Tx, settings: NotificationSettings, env: Envelope) -> None:
    """An event whose kinds depend on its type only."""
    notify(tx, settings, env, domain.EventFacts(env.type))


def shipment_event(tx: Tx, settings: NotificationSettings, env: Envelope) -> None:
    """Shipment events: the "notify the customer" switch of the edit (or of the status change) is honoured."""
    notify(tx, settings, env, domain.EventFacts(env.type, notify_customer=bool(env.data.get("notify_customer", True))))


ORDER_EVENT_HANDLERS: dict[str, Handler] = {
    order_events.OrderPlaced.event_type: order_placed,
    order_events.OrderStageChanged.event_type: stage_changed,
    order_events.OrderCustomerChanged.event_type: customer_changed,
    order_events.OrderAddressSet.event_type: address_set,
}
PAYMENT_EVENT_HANDLERS: dict[str, Handler] = {
    payment_events.PaymentLinkCreated.event_type: plain,
    payment_events.PaymentReceived.event_type: plain,
    payment_events.PaymentFailed.event_type: plain,
    payment_events.RefundCompleted.event_type: plain,
}
FULFILLMENT_EVENT_HANDLERS: dict[str, Handler] = {
    fulfillment_events.ShipmentCreated.event_type: shipment_event,
    fulfillment_events.ShipmentStatusChanged.event_type: shipment_event,
    fulfillment_events.ShipmentEdited.event_type: shipment_event,
    fulfillment_events.ReturnRecorded.event_type: plain,
}

HANDLERS: dict[str, dict[str, Handler]] = {
    "orders": ORDER_EVENT_HANDLERS, "payments": PAYMENT_EVENT_HANDLERS, "fulfillment": FULFILLMENT_EVENT_HANDLERS,
}
"""Per source service, what notifications does on each event type it binds (messages). Alerts and the timeline
add their handlers for the same sources (one subscription per source: the lists are merged there)."""

ORDER_EVENT_TYPES: tuple[str, ...] = tuple(sorted(ORDER_EVENT_HANDLERS))
PAYMENT_EVENT_TYPES: tuple[str, ...] = tuple(sorted(PAYMENT_EVENT_HANDLERS))
FULFILLMENT_EVENT_TYPES: tuple[str, ...] = tuple(sorted(FULFILLMENT_EVENT_HANDLERS))


def handle_events(db: Database, settings: NotificationSettings, source: str, events: Sequence[Envelope]
                  ) -> list[inbox.Outcome]:
    """Apply a batch of one source's events in one transaction, each once and in per-order order."""
    handlers = HANDLERS[source]

    def apply(tx: Tx, env: Envelope) -> None:
        handler = handlers.get(env.type)
        if handler is not None:
            handler(tx, settings, env)

    with db.transaction() as tx, outbox.buffered(tx), batch_writes(tx):
        copy_placed_orders(tx, events)
        return inbox.process_batch_in(tx, f"notifications.{source}", events, apply, types=tuple(sorted(handlers)))
