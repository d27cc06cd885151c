"""Staff alerts (seed 000: "real-time alerts for every new order, payment update, or status change").

``ALERT_RULES`` is the table: event type -> the alerts it raises, each with a title and a text in the
merchant's words naming the order number. An alert is a row of ``alerts`` (its ``position``, given when the
stream is first read, is the live stream's event id: ``store_timeline.position_alerts``) and a
``notification.alert_raised.v1`` written to the outbox in the same transaction. A redelivered event raises
nothing again: the row is unique per (event id, kind).

* ``order.placed`` -> ``new_order`` (test orders too, marked as such);
* ``order.stage_changed`` -> ``stage_change``, or ``order_held`` when the order goes on hold (instead of a
  ``stage_change``: one alert per move, and a hold is the one that needs someone);
* ``payment.status_changed`` -> ``payment_update``;
* ``fulfillment.out_of_stock`` -> ``out_of_stock``;
* ``fulfillment.shipment_status_changed`` to ``delivery_failed`` -> ``delivery_failed``;
* ``fulfillment.label_void_failed`` -> ``label_void_failed``.

``message_failed`` is raised by the sender (a message that cannot be delivered) through :func:`raise_alert`;
``message_status`` by every status change of a message about an order (:func:`message_status`), so the order
page shows a delivery status turn live. It is an alert row and an event, never a message: nobody is e-mailed.
``alerts_after`` is what the gateway's SSE stream polls.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from services.fulfillment.contracts import events as fev
from services.fulfillment.contracts.vocabulary import ShipmentStatus
from services.notifications import store_timeline as store
from services.notifications.contracts.events import AlertRaised
from services.notifications.contracts.schemas import AlertList, AlertView
from services.notifications.contracts.vocabulary import AlertKind
from services.orders.contracts import events as oev
from services.orders.contracts.schemas import Actor, Stage
from services.orders.contracts.stages import STAGE_LABELS
from services.payments.contracts import events as pev
from shared import outbox
from shared.db import Database
from shared.envelope import Envelope, EventModel
from shared.errors import InvalidRequest, field_error
from shared.money import format_amount

SERVICE = "notifications"
STORE_SUBJECT = "store"  # subject of an alert about no order
MAX_LIMIT = 1000

Tx = psycopg.Connection[Any]


@dataclass(frozen=True)
class Alert:
    """What an event tells staff: the kind, a title and a text (the order's number and test flag come along)."""

    kind: AlertKind
    title: str
    text: str


AlertRule = Callable[[Any], list[Alert]]


# ------------------------------------------------------------------------------------------------ words
def money(amount: Any, currency: str) -> str:
    """``44.535 TND``: the currency's places, as documents and messages write it."""
    return f"{format_amount(amount, currency)} {currency}"


def words(value: str) -> str:
    """A code as the merchant reads it: ``partially_paid`` -> ``partially paid``."""
    return value.replace("_", " ")


def who(actor: Actor | None) -> str:
    """``Ana (staff)``."""
    return f"{actor.name} ({actor.type})" if actor is not None else "the system"


def stage(value: Stage) -> str:
    return STAGE_LABELS[value]


def order_ref(number: int, test: bool) -> str:
    return f"test order #{number}" if test else f"order #{number}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# ------------------------------------------------------------------------------------------------ rules
def new_order(d: oev.OrderPlaced) -> list[Alert]:
    units = sum(i.quantity for i in d.items)
    title = f"New {order_ref(d.number, d.test)}"
    text = (f"{d.customer.name} ordered {units} item{'s' if units != 1 else ''} for "
            f"{money(d.totals.total, d.currency)} ({words(d.channel.value)}).")
    return [Alert(AlertKind.new_order, title, text)]


def stage_changed(d: oev.OrderStageChanged) -> list[Alert]:
    move = f"{stage(d.from_stage)} -> {stage(d.to_stage)} by {who(d.actor)}"
    reason = f": {words(d.reason)}" if d.reason else ""
    ref = _capital(order_ref(d.number, d.test))
    if d.to_stage == Stage.on_hold:
        return [Alert(AlertKind.order_held, f"{ref} is on hold", f"{move}{reason}. It waits for someone to act.")]
    return [Alert(AlertKind.stage_change, f"{ref} is {stage(d.to_stage)}", f"{move}{reason}.")]


def payment_update(d: pev.PaymentStatusChanged) -> list[Alert]:
    before = words(d.previous_status) if d.previous_status else "new"
    parts = [f"Payment {before} -> {words(d.status)}.", f"Captured {money(d.captured, d.currency)}"]
    if d.refunded:
        parts.append(f"refunded {money(d.refunded, d.currency)}")
    parts.append(f"due {money(d.balance_due, d.currency)}")
    text = parts[0] + " " + ", ".join(parts[1:]) + "."
    if d.reason:
        text += f" ({words(d.reason)})"
    return [Alert(AlertKind.payment_update, f"Payment update on {order_ref(d.number, d.test)}: {words(d.status)}",
                  text)]


def out_of_stock(d: fev.OutOfStock) -> list[Alert]:
    short = ", ".join(f"{ln.sku} ({ln.requested} requested, {ln.available} available)" for ln in d.lines)
    return [Alert(AlertKind.out_of_stock, f"Out of stock for {order_ref(d.number, d.test)}",
                  f"Nothing was reserved: {short}. Restock and retry the reservation, or reject the order.")]


def _parcel(s: fev.ShipmentSummary) -> str:
    carrier = " ".join(x for x in (s.carrier, s.tracking_number) if x)
    return f"shipment {s.number}" + (f" ({carrier})" if carrier else "")


def shipment_status_changed(d: fev.ShipmentStatusChanged) -> list[Alert]:
    if d.to_status != ShipmentStatus.delivery_failed:
        return []
    reason = f": {d.reason}" if d.reason else ""
    return [Alert(AlertKind.delivery_failed, f"Delivery failed: shipment {d.shipment.number}",
                  f"The {_parcel(d.shipment)} of {order_ref(d.number, d.test)} could not be delivered{reason}. "
                  "The parcel comes back to you; ship the items again in a new shipment.")]


def label_void_failed(d: fev.LabelVoidFailed) -> list[Alert]:
    return [Alert(AlertKind.label_void_failed, f"Label not voided: shipment {d.shipment.number}",
                  f"The carrier refused to void the label of {_parcel(d.shipment)} of {order_ref(d.number, d.test)}"
                  f": {words(d.reason)}. The parcel may already be moving: contact the carrier.")]


ALERT_RULES: dict[str, AlertRule] = {
    oev.OrderPlaced.event_type: new_order,
    oev.OrderStageChanged.event_type: stage_changed,
    pev.PaymentStatusChanged.event_type: payment_update,
    fev.OutOfStock.event_type: out_of_stock,
    fev.ShipmentStatusChanged.event_type: shipment_status_changed,
    fev.LabelVoidFailed.event_type: label_void_failed,
}
"""Event type -> the alerts it raises (possibly none: a shipment moving forward normally)."""

ALERT_EVENT_TYPES: tuple[str, ...] = tuple(sorted(ALERT_RULES))


def alerts_for(event_type: str, data: EventModel) -> list[Alert]:
    rule = ALERT_RULES.get(event_type)
    return rule(data) if rule is not None else []


CHANNEL_WORDS = {"sms": "SMS", "whatsapp": "WhatsApp", "email": "E-mail"}


def message_status(message: Any, recipient: str, from_status: str | None, status: str,
                   reason: str | None) -> Alert:
    """``SMS to +49•••34 delivered``: a message about an order took a status (``recipient`` already masked)."""
    number = message.get("number")
    what = order_ref(number, bool(message.get("test"))) if number else "the store"
    moved = f"{words(from_status)} -> {words(status)}" if from_status else words(status)
    channel = CHANNEL_WORDS.get(message["channel"], message["channel"])
    text = f"The {words(message['kind'])} {channel} message for {what}: {moved}" + (f" ({reason})." if reason else ".")
    return Alert(AlertKind.message_status, f"{channel} to {recipient} {words(status)}", text)


# ------------------------------------------------------------------------------------------------ raising
@dataclass(frozen=True)
class _Raised:
    alert: Alert
    row: dict[str, Any]
    subject: str
    causation: str | None


# Alerts raised inside ``buffered``, per transaction (keyed by the connection: concurrent green threads never mix).
_buffers: weakref.WeakKeyDictionary[Tx, list[_Raised]] = weakref.WeakKeyDictionary()


@contextmanager
def buffered(tx: Tx) -> Iterator[None]:
    """Collect the alerts this transaction raises and write them at the end of the block, all at once (two
    statements for a whole batch). Leave this block inside ``outbox.buffered`` so the ``alert_raised`` events
    are written with the batch's others."""
    if tx in _buffers:
        yield
        return
    pending: list[_Raised] = []
    _buffers[tx] = pending
    try:
        yield
        del _buffers[tx]
        ids = store.insert_alerts(tx, [p.row for p in pending])
        for p, alert_id in zip(pending, ids, strict=True):
            if alert_id is not None:
                _announce(tx, p, alert_id)
    finally:
        _buffers.pop(tx, None)


STREAM_ONLY: frozenset[AlertKind] = frozenset({AlertKind.message_status})
"""Alert kinds written for the live stream but not announced as ``notification.alert_raised.v1``: each message
status is already its own ``notification.message_status_changed.v1``, and repeating it doubled the events a
placed order makes notifications publish (two messages, each queued, sent and delivered)."""


def _announce(tx: Tx, raised: _Raised, alert_id: int) -> None:
    r, alert = raised.row, raised.alert
    if alert.kind in STREAM_ONLY:
        return
    outbox.emit(tx, SERVICE, AlertRaised(alert_id=alert_id, kind=alert.kind, order_id=r["order_id"],
                                         number=r["number"], test=r["test"], title=alert.title, text=alert.text,
                                         at=r["at"]),
                subject=raised.subject, correlation_id=raised.subject,
                causation_id=raised.causation or f"alert:{alert_id}")


def raise_alert(tx: Tx, alert: Alert, *, order_id: UUID | str | None = None, number: int | None = None,
                test: bool = False, at: datetime | None = None, event_id: UUID | None = None,
                causation: str | None = None) -> int | None:
    """Record the alert and announce it (``notification.alert_raised.v1``, same transaction, but for the
    ``STREAM_ONLY`` kinds). Returns its id,
    or None when ``event_id`` raised this kind already, or when it waits for the end of a ``buffered`` block."""
    when = at or datetime.now(UTC)
    row = {"kind": alert.kind.value, "order_id": order_id, "number": number, "test": test,
           "title": alert.title, "text": alert.text, "at": when, "event_id": event_id}
    raised = _Raised(alert, row, str(order_id) if order_id is not None else STORE_SUBJECT, causation)
    pending = _buffers.get(tx)
    if pending is not None:
        pending.append(raised)
        return None
    found = store.insert_alert(tx, row)
    if found is None:
        return None
    _announce(tx, raised, int(found["id"]))
    return int(found["id"])


def raise_alerts(tx: Tx, env: Envelope, data: EventModel) -> list[int]:
    """The alerts an incoming event raises (once per event and kind)."""
    raised = []
    for alert in alerts_for(env.type, data):
        alert_id = raise_alert(tx, alert, order_id=getattr(data, "order_id", None),
                               number=getattr(data, "number", None), test=bool(getattr(data, "test", False)),
                               at=getattr(data, "at", None) or env.time, event_id=env.id, causation=str(env.id))
        if alert_id is not None:
            raised.append(alert_id)
    return raised


# ------------------------------------------------------------------------------------------------ reading
def _kinds(kinds: Sequence[str] | str | None) -> list[str] | None:
    """``kinds`` as the stream's ``?kinds=a,b`` gives it (a list, or one comma-separated string)."""
    if kinds is None:
        return None
    given = kinds.split(",") if isinstance(kinds, str) else list(kinds)
    names = [k.strip() for k in given if k and k.strip()]
    if not names:
        return None
    known = {k.value for k in AlertKind}
    unknown = [k for k in names if k not in known]
    if unknown:
        reason = f"unknown alert kind(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        raise InvalidRequest(f"kinds: {reason}.", errors=[field_error("kinds", reason, "unknown_kind", "query")])
    return names


def alerts_after(db: Database, after_id: int = 0, kinds: Sequence[str] | str | None = None,
                 limit: int = 100) -> dict[str, Any]:
    """Alerts after stream position ``after_id`` (the last one a client saw; 0: from the first), of ``kinds``
    (None: all), in position order, at most ``limit``. The alerts committed since the last read get their
    positions first."""
    wanted = _kinds(kinds)
    if not isinstance(after_id, int) or isinstance(after_id, bool) or after_id < 0:
        raise InvalidRequest("after: give the id of the last alert seen (0 or more).",
                             errors=[field_error("after", "must be an integer of 0 or more", "invalid", "query")])
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit: give 1 to {MAX_LIMIT}.",
                             errors=[field_error("limit", f"must be 1 to {MAX_LIMIT}", "out_of_range", "query")])
    with db.transaction() as tx:  # committed before the read: what it positions is visible to it
        store.position_alerts(tx)
    with db.transaction() as tx:
        rows = store.alerts_after(tx, after_id, wanted, limit)
    return AlertList(items=[AlertView.model_validate(r) for r in rows]).model_dump(mode="json")
