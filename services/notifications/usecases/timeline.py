"""The order timeline: the order's whole story across services, in order, with actor and time for each entry.

Notifications subscribes, once per source service, to every event type of orders, payments and fulfillment
(their contracts' event lists) but the SKU's stock changes (``NOT_ON_TIMELINE``), and keeps one entry per
event (unique by event id): time, source, kind (the event type), a one-line summary in the merchant's words
(``SUMMARIES``: a handler table with one row per event type of the three contracts), the actor and a small
data dict. The same batch raises the staff alerts the event calls for (``usecases.alerts``), in the same
transaction, through the inbox (each event once, in per-order order).

``timeline(order_id)`` returns the entries in time order; entries of the same instant keep their source's
per-order sequence. Merged in: every message of the order and each status it took (``messages`` and
``message_history``: queued, sent, delivered, read, failed...), as entries of source ``notifications`` and kind
``message.<status>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import psycopg

from services.fulfillment.contracts import events as fev
from services.fulfillment.contracts.events import FULFILLMENT_EVENTS
from services.fulfillment.contracts.vocabulary import FULFILLMENT_LABELS, SHIPMENT_LABELS
from services.notifications import store_timeline as store
from services.notifications.contracts.schemas import Timeline, TimelineEntry
from services.notifications.contracts.vocabulary import KIND_BY_NAME
from services.notifications.domain import mask
from services.notifications.usecases.alerts import ALERT_RULES, money, raise_alerts, stage, who, words
from services.notifications.usecases.alerts import buffered as alerts_buffered
from services.orders.contracts import events as oev
from services.orders.contracts.events import ORDER_EVENTS
from services.orders.contracts.schemas import Actor
from services.payments.contracts import events as pev
from services.payments.contracts.events import PAYMENT_EVENTS
from shared import inbox, outbox
from shared.catalog import parse_data
from shared.db import Database
from shared.envelope import Envelope, EventModel
from shared.errors import InvalidRequest, NotFound, field_error

Tx = psycopg.Connection[Any]
Told = tuple[str, dict[str, Any]]
"""(summary, data) of one event."""

SOURCE_SYSTEMS: dict[str, Actor] = {
    "payments": Actor(type="system", id="payments", name="Payments"),
}
"""Who acted, for a source whose events carry no actor (payments: the ledger moved)."""

QUOTE_LENGTH = 80


def _quote(text: str | None) -> str:
    text = " ".join((text or "").split())
    return f'"{text[:QUOTE_LENGTH - 1]}…"' if len(text) > QUOTE_LENGTH else f'"{text}"'


def _units(lines: Sequence[Any]) -> str:
    """``MUG x3, CAP x1``."""
    return ", ".join(f"{ln.sku} x{ln.quantity}" for ln in lines) or "nothing"


def _address(a: oev.AddressData) -> str:
    return ", ".join(x for x in (a.line1, a.line2, a.city, a.region, a.postal_code, a.country) if x)


def _by(d: Any) -> str:
    actor = getattr(d, "actor", None)
    return f" by {who(actor)}" if actor is not None else ""


# ------------------------------------------------------------------------------------------------ orders
def order_placed(d: oev.OrderPlaced) -> Told:
    units = sum(i.quantity for i in d.items)
    total = money(d.totals.total, d.currency)
    return (f"Order #{d.number} placed on {words(d.channel.value)}{_by(d)}: {units} item{'s' if units != 1 else ''},"
            f" {total}" + (" (test order)" if d.test else ""),
            {"channel": d.channel.value, "stage": d.stage.value, "items": units, "total": total,
             "customer": d.customer.name})


def stage_changed(d: oev.OrderStageChanged) -> Told:
    reason = f" ({words(d.reason)})" if d.reason else ""
    return (f"Stage: {d.from_stage.value} -> {d.to_stage.value}{_by(d)}{reason}",
            {"from_stage": d.from_stage.value, "to_stage": d.to_stage.value, "to_stage_label": stage(d.to_stage),
             "reason": d.reason})


def address_set(d: oev.OrderAddressSet) -> Told:
    verb = "changed" if d.previous is not None else "set"
    return (f"Shipping address {verb}{_by(d)}: {_address(d.address)}",
            {"city": d.address.city, "country": d.address.country})


def payment_method_set(d: oev.OrderPaymentMethodSet) -> Told:
    paid = ", marked paid" if d.paid else ""
    return (f"Payment method: {words(d.method.value)}{paid}{_by(d)}",
            {"method": d.method.value, "paid": d.paid,
             "previous_method": d.previous_method.value if d.previous_method else None})


def customer_note_set(d: oev.OrderCustomerNoteSet) -> Told:
    if d.skipped or not d.note:
        return f"Customer note skipped{_by(d)}", {"skipped": True}
    return f"Customer note{_by(d)}: {_quote(d.note)}", {"skipped": False}


def customer_changed(d: oev.OrderCustomerChanged) -> Told:
    return (f"Customer changed{_by(d)}: {d.previous.name} -> {d.customer.name}",
            {"customer": d.customer.name, "previous": d.previous.name})


def note_added(d: oev.OrderNoteAdded) -> Told:
    return f"Note added{_by(d)}: {_quote(d.text)}", {"note_id": str(d.note_id)}


def note_edited(d: oev.OrderNoteEdited) -> Told:
    return f"Note edited{_by(d)}: {_quote(d.text)}", {"note_id": str(d.note_id)}


def note_deleted(d: oev.OrderNoteDeleted) -> Told:
    return f"Note deleted{_by(d)}", {"note_id": str(d.note_id)}


# ------------------------------------------------------------------------------------------------ payments
def payment_status_changed(d: pev.PaymentStatusChanged) -> Told:
    before = words(d.previous_status) if d.previous_status else "new"
    reason = f" ({words(d.reason)})" if d.reason else ""
    return (f"Payment status: {before} -> {words(d.status)}, {money(d.captured, d.currency)} captured,"
            f" {money(d.balance_due, d.currency)} due{reason}",
            {"status": d.status, "previous_status": d.previous_status, "captured": money(d.captured, d.currency),
             "refunded": money(d.refunded, d.currency), "balance_due": money(d.balance_due, d.currency)})


def payment_link_created(d: pev.PaymentLinkCreated) -> Told:
    return (f"Payment link sent for {money(d.amount, d.currency)}",
            {"payment_id": d.payment_id, "amount": money(d.amount, d.currency), "url": d.url})


def payment_received(d: pev.PaymentReceived) -> Told:
    ref = f", ref {d.reference}" if d.reference else ""
    return (f"Payment received: {money(d.amount, d.currency)} ({words(d.method)}{ref})",
            {"payment_id": d.payment_id, "method": d.method, "amount": money(d.amount, d.currency),
             "reference": d.reference})


def payment_failed(d: pev.PaymentFailed) -> Told:
    code = f" ({words(d.decline_code)})" if d.decline_code else ""
    return (f"Payment failed: {money(d.amount, d.currency)}{code}",
            {"payment_id": d.payment_id, "amount": money(d.amount, d.currency), "decline_code": d.decline_code})


def refund_completed(d: pev.RefundCompleted) -> Told:
    by_hand = f"; {money(d.manual_amount, d.currency)} to pay out by hand" if d.manual else ""
    reason = f" ({d.reason})" if d.reason else ""
    return (f"Refund {d.reference}: {money(d.amount, d.currency)}{by_hand}{reason}",
            {"reference": d.reference, "amount": money(d.amount, d.currency), "manual": d.manual})


def refund_paid_out(d: pev.RefundPaidOut) -> Told:
    return (f"Refund {d.reference} paid out by hand: {money(d.amount, d.currency)}",
            {"reference": d.reference, "amount": money(d.amount, d.currency)})


def payment_voided(d: pev.PaymentVoided) -> Told:
    reason = f" ({words(d.reason)})" if d.reason else ""
    return (f"Card authorization released: {money(d.amount, d.currency)}{reason}",
            {"payment_id": d.payment_id, "amount": money(d.amount, d.currency)})


def ledger_violation(d: pev.PaymentLedgerViolation) -> Told:
    return f"Payment ledger problem: {d.reason}", {"reason": d.reason, "violations": len(d.violations)}


# ------------------------------------------------------------------------------------------------ fulfillment
def _shipment(s: fev.ShipmentSummary) -> dict[str, Any]:
    return {"shipment_id": str(s.shipment_id), "number": s.number, "status": s.status.value,
            "carrier": s.carrier, "tracking_number": s.tracking_number}


def stock_reserved(d: fev.StockReserved) -> Told:
    return f"Stock reserved: {_units(d.lines)}", {"lines": len(d.lines)}


def out_of_stock(d: fev.OutOfStock) -> Told:
    short = ", ".join(f"{ln.sku} ({ln.requested} requested, {ln.available} available)" for ln in d.lines)
    return f"Out of stock: {short}", {"skus": [ln.sku for ln in d.lines]}


def stock_released(d: fev.StockReleased) -> Told:
    return f"Stock released: {_units(d.lines)}", {"lines": len(d.lines)}


def fulfillment_status_changed(d: fev.FulfillmentStatusChanged) -> Told:
    return (f"Fulfillment: {FULFILLMENT_LABELS[d.from_status]} -> {FULFILLMENT_LABELS[d.to_status]}",
            {"from_status": d.from_status.value, "to_status": d.to_status.value, "delivered": d.delivered,
             "ordered": d.ordered})


def shipment_created(d: fev.ShipmentCreated) -> Told:
    s = d.shipment
    via = " ".join(x for x in (s.carrier, s.tracking_number) if x)
    return (f"Shipment {s.number} created{_by(d)}: {_units(s.lines)}" + (f" ({via})" if via else ""),
            _shipment(s))


def shipment_status_changed(d: fev.ShipmentStatusChanged) -> Told:
    reason = f": {d.reason}" if d.reason else ""
    return (f"Shipment {d.shipment.number} {SHIPMENT_LABELS[d.to_status].lower()}{reason}",
            {**_shipment(d.shipment), "from_status": d.from_status.value, "notify_customer": d.notify_customer})


def shipment_edited(d: fev.ShipmentEdited) -> Told:
    changed = ", ".join(words(c) for c in d.changed) or "nothing"
    return f"Shipment {d.shipment.number} edited{_by(d)}: {changed}", {**_shipment(d.shipment), "changed": d.changed}


def label_void_failed(d: fev.LabelVoidFailed) -> Told:
    return (f"Label of shipment {d.shipment.number} not voided: {words(d.reason)}",
            {**_shipment(d.shipment), "reason": d.reason})


def return_recorded(d: fev.ReturnRecorded) -> Told:
    restocked = f" (restocked {_units(d.restocked)})" if d.restocked else ""
    reason = f": {d.reason}" if d.reason else ""
    return (f"Return recorded{_by(d)}: {_units(d.lines)}{restocked}{reason}",
            {"return_id": str(d.return_id), "lines": len(d.lines)})


SUMMARIES: dict[str, Callable[[Any], Told]] = {
    oev.OrderPlaced.event_type: order_placed,
    oev.OrderStageChanged.event_type: stage_changed,
    oev.OrderAddressSet.event_type: address_set,
    oev.OrderPaymentMethodSet.event_type: payment_method_set,
    oev.OrderCustomerNoteSet.event_type: customer_note_set,
    oev.OrderCustomerChanged.event_type: customer_changed,
    oev.OrderNoteAdded.event_type: note_added,
    oev.OrderNoteEdited.event_type: note_edited,
    oev.OrderNoteDeleted.event_type: note_deleted,
    pev.PaymentStatusChanged.event_type: payment_status_changed,
    pev.PaymentLinkCreated.event_type: payment_link_created,
    pev.PaymentReceived.event_type: payment_received,
    pev.PaymentFailed.event_type: payment_failed,
    pev.RefundCompleted.event_type: refund_completed,
    pev.RefundPaidOut.event_type: refund_paid_out,
    pev.PaymentVoided.event_type: payment_voided,
    pev.PaymentLedgerViolation.event_type: ledger_violation,
    fev.StockReserved.event_type: stock_reserved,
    fev.OutOfStock.event_type: out_of_stock,
    fev.StockReleased.event_type: stock_released,
    fev.FulfillmentStatusChanged.event_type: fulfillment_status_changed,
    fev.ShipmentCreated.event_type: shipment_created,
    fev.ShipmentStatusChanged.event_type: shipment_status_changed,
    fev.ShipmentEdited.event_type: shipment_edited,
    fev.LabelVoidFailed.event_type: label_void_failed,
    fev.ReturnRecorded.event_type: return_recorded,
}
"""Event type -> its one-line summary and data: a row for every event type of the three contracts the
timeline takes."""

NOT_ON_TIMELINE: dict[str, str] = {
    fev.StockChanged.event_type: "its subject is a SKU, not an order: a stock level, three per placed order, whose "
                                 "order side stock_reserved, stock_released and return_recorded already tell; "
                                 "ordered per SKU, it would also hold an order's story up behind the SKU's stream",
}
"""Event types of the three contracts the timeline does not take, each with the reason."""

STORY_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    source: tuple(e.event_type for e in events if e.event_type not in NOT_ON_TIMELINE)
    for source, events in (("orders", ORDER_EVENTS), ("payments", PAYMENT_EVENTS), ("fulfillment", FULFILLMENT_EVENTS))
}
"""What the timeline subscribes to, per source service: every type its contract lists but ``NOT_ON_TIMELINE``."""


def _check() -> None:
    every = {t for types in STORY_EVENT_TYPES.values() for t in types}
    if set(SUMMARIES) != every:
        raise AssertionError(f"timeline summaries and the contracts' event lists differ: {set(SUMMARIES) ^ every}")
    if not set(ALERT_RULES) <= every:
        raise AssertionError("an alert rule names an event type the timeline does not subscribe to")


_check()


def consumer(source: str) -> str:
    """The inbox consumer of one source's subscription."""
    return f"notifications.timeline.{source}"


# ------------------------------------------------------------------------------------------------ events
def entry_of(env: Envelope, data: EventModel) -> dict[str, Any] | None:
    """The timeline row of an event, or None when it is about no order (a stock change of no order)."""
    order_id = getattr(data, "order_id", None)
    tell = SUMMARIES.get(env.type)
    if order_id is None or tell is None:
        return None
    summary, small = tell(data)
    actor = getattr(data, "actor", None) or SOURCE_SYSTEMS.get(env.source_service)
    return {"event_id": env.id, "order_id": order_id, "source": env.source_service, "kind": env.type,
            "sequence": env.sequence, "at": getattr(data, "at", None) or env.time, "summary": summary,
            "actor": actor.model_dump(mode="json") if actor is not None else None,
            "data": {k: v for k, v in small.items() if v is not None}}


def apply_story_event(tx: Tx, env: Envelope, entries: list[dict[str, Any]] | None = None) -> None:
    """One event of the order's story: its timeline entry (added to ``entries`` to be written with the batch's
    others, or written now) and the alerts it raises."""
    data = parse_data(env)
    row = entry_of(env, data)
    if row is not None:
        if entries is None:
            store.insert_entry(tx, row)
        else:
            entries.append(row)
    raise_alerts(tx, env, data)


def handle_story_events(db: Database, source: str, events: Sequence[Envelope]) -> list[inbox.Outcome]:
    """A batch from one source service, in one transaction: each event once, in per-order order. The entries
    are written with one statement and the alerts at the very end (``alerts.buffered``: their lock is held from
    then to the commit only)."""
    entries: list[dict[str, Any]] = []
    with db.transaction() as tx, outbox.buffered(tx), alerts_buffered(tx):
        outcomes = inbox.process_batch_in(tx, consumer(source), events,
                                          lambda tx, env: apply_story_event(tx, env, entries),
                                          types=STORY_EVENT_TYPES[source])
        store.insert_entries(tx, entries)
    return outcomes


# ------------------------------------------------------------------------------------------------ messages
NOTIFICATIONS_ACTOR = {"type": "system", "id": "notifications", "name": "Notifications"}
CHANNEL_WORDS = {"email": "E-mail", "sms": "SMS", "whatsapp": "WhatsApp"}
STAFF_KIND_LABELS = {"new_order_staff": "New order (to the store)"}
MESSAGE_STATUS_WORDS = {"queued": "queued", "retrying": "retrying", "sent": "sent", "delivered": "delivered",
                        "read": "read", "failed": "failed"}


def message_entry(h: dict[str, Any]) -> dict[str, Any]:
    """One status a message took, as a timeline entry (kind ``message.<status>``, source notifications)."""
    known = KIND_BY_NAME.get(h["kind"])
    label = known.label if known else STAFF_KIND_LABELS.get(h["kind"], words(h["kind"]))
    to = mask(h["recipient"]) + (" (test recipient)" if h["redirected"] else "")
    reason = f": {h['reason']}" if h["reason"] else ""
    status = MESSAGE_STATUS_WORDS.get(h["status"], words(h["status"]))
    summary = f'{CHANNEL_WORDS.get(h["channel"], h["channel"])} "{label}" to {to} {status}{reason}'
    return {"at": h["at"], "source": "notifications", "kind": f"message.{h['status']}", "summary": summary,
            "actor": dict(NOTIFICATIONS_ACTOR),
            "data": {k: v for k, v in {"message_id": str(h["message_id"]), "kind": h["kind"], "channel": h["channel"],
                                       "recipient": mask(h["recipient"]), "status": h["status"],
                                       "from_status": h["from_status"], "reason": h["reason"],
                                       "by": h["source"]}.items() if v is not None}}


# ------------------------------------------------------------------------------------------------ reading
def timeline(db: Database, order_id: str | UUID) -> dict[str, Any]:
    """The order's story: every entry in time order (ties in the source's per-order order)."""
    try:
        oid = UUID(str(order_id))
    except ValueError:
        raise InvalidRequest("order_id: give the order's id (a UUID).",
                             errors=[field_error("order_id", "not a UUID", "invalid_uuid", "path")]) from None
    with db.transaction() as tx:
        rows = store.entries(tx, oid)
        messages = [message_entry(h) for h in store.message_history(tx, oid)]
    # A stable sort by time: the events' own order (time, then per-order sequence) is kept, and a message's
    # status of the same instant as an event comes after it (the event caused it).
    rows = sorted([*rows, *messages], key=lambda r: r["at"])
    if not rows:
        raise NotFound(f"Notifications has no story for order {oid} (yet): give the id of a placed order.",
                       order_id=str(oid))
    return Timeline(order_id=oid, entries=[TimelineEntry.model_validate(r) for r in rows]).model_dump(mode="json")
