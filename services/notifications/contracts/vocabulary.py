"""The words notifications and its clients share: channels, message statuses and their machine, what can be
notified (and with which template variables), and the staff alert kinds.

``MESSAGE_TRANSITIONS`` is the message status machine: receipts only move a message forward (a late
``delivered`` after ``read`` changes nothing); ``NOTIFICATION_KINDS`` says, for each kind of customer
notification, which events raise it and which variables its templates may use (an unknown variable is refused
when a template is saved). The README, the API and the dashboard read these tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class MessageChannel(StrEnum):
    email = "email"
    sms = "sms"
    whatsapp = "whatsapp"


class MessageStatus(StrEnum):
    queued = "queued"
    retrying = "retrying"
    sent = "sent"
    delivered = "delivered"
    read = "read"
    failed = "failed"


M = MessageStatus

MESSAGE_TRANSITIONS: dict[MessageStatus, frozenset[MessageStatus]] = {
    M.queued: frozenset({M.sent, M.retrying, M.failed, M.delivered, M.read}),
    M.retrying: frozenset({M.sent, M.failed, M.delivered, M.read}),
    M.sent: frozenset({M.delivered, M.read, M.failed}),
    M.delivered: frozenset({M.read}),
    M.read: frozenset(),
    M.failed: frozenset({M.queued}),  # only by staff: "resend"
}
"""Status -> the statuses a message may move to. A receipt may skip ahead (``read`` without ``delivered``);
``retrying`` -> ``retrying`` is not a move (another attempt is counted, the status stays)."""

MESSAGE_DESCRIPTIONS: dict[MessageStatus, str] = {
    M.queued: "Recorded, about to be sent (the idempotency key is stored before the provider is called).",
    M.retrying: "The provider or the mail server was unreachable; another attempt is scheduled with backoff.",
    M.sent: "The provider or the mail server accepted it.",
    M.delivered: "The provider reports it reached the customer's phone or mailbox.",
    M.read: "The customer read it (WhatsApp read receipt).",
    M.failed: "It cannot be delivered (the provider's reason is kept); staff were alerted and may resend it.",
}


class AlertKind(StrEnum):
    """Staff alerts (real time, seed 000): what the live stream carries."""

    new_order = "new_order"
    payment_update = "payment_update"
    stage_change = "stage_change"
    order_held = "order_held"
    out_of_stock = "out_of_stock"
    delivery_failed = "delivery_failed"  # a shipment's delivery failed
    message_failed = "message_failed"  # a customer message could not be delivered
    label_void_failed = "label_void_failed"
    message_status = "message_status"  # a customer message's delivery status changed (sent, delivered, read…)


ORDER_VARIABLES: frozenset[str] = frozenset({"order", "customer", "store", "test"})
"""Every order notification's template may use these: ``order`` (number, total, currency, items, channel,
stage, stage_label, placed_at, shipping_address), ``customer`` (name, phone, email), ``store`` (name, email,
phone), ``test`` (true for a test order)."""


@dataclass(frozen=True)
class NotificationKind:
    name: str
    label: str
    events: tuple[str, ...]  # the event types that raise it
    variables: frozenset[str]  # beyond ORDER_VARIABLES
    default_on: bool = True


NOTIFICATION_KINDS: tuple[NotificationKind, ...] = (
    NotificationKind("order_placed", "Order placed", ("order.placed.v1",), frozenset()),
    NotificationKind("order_stage_changed", "Order status changed", ("order.stage_changed.v1",),
                     frozenset({"from_stage", "to_stage", "to_stage_label", "reason"})),
    NotificationKind("payment_link", "Payment request", ("payment.link_created.v1",),
                     frozenset({"payment_url", "amount", "expires_at"})),
    NotificationKind("payment_received", "Payment received", ("payment.received.v1",),
                     frozenset({"amount", "method"})),
    NotificationKind("payment_failed", "Payment failed", ("payment.failed.v1",), frozenset({"amount", "reason"})),
    NotificationKind("refund_completed", "Refund", ("refund.completed.v1",), frozenset({"amount", "reference"})),
    NotificationKind("shipment_created", "Shipment created", ("fulfillment.shipment_created.v1",),
                     frozenset({"shipment"})),
    NotificationKind("shipment_updated", "Shipment update",
                     ("fulfillment.shipment_status_changed.v1", "fulfillment.shipment_edited.v1"),
                     frozenset({"shipment", "status", "status_label"})),
    NotificationKind("return_recorded", "Return received", ("fulfillment.return_recorded.v1",),
                     frozenset({"lines"})),
)
"""What a customer can be told. Settings say which kinds are on and on which channels."""

KIND_BY_NAME: dict[str, NotificationKind] = {k.name: k for k in NOTIFICATION_KINDS}

LANGUAGES: tuple[str, ...] = ("en", "fr", "ar", "es")
"""Languages the default templates ship in (``en`` is the fallback)."""


def _check() -> None:
    ranks_ok = set(MESSAGE_TRANSITIONS) == set(MessageStatus) == set(MESSAGE_DESCRIPTIONS)
    if not ranks_ok or len(KIND_BY_NAME) != len(NOTIFICATION_KINDS):
        raise AssertionError("notifications vocabulary tables are incomplete")


_check()


def tables() -> dict[str, Any]:
    return {
        "message_statuses": [
            {"status": s.value, "description": MESSAGE_DESCRIPTIONS[s],
             "allowed": [t.value for t in MessageStatus if t in MESSAGE_TRANSITIONS[s]]}
            for s in MessageStatus
        ],
        "kinds": [
            {"kind": k.name, "label": k.label, "events": list(k.events),
             "variables": sorted(ORDER_VARIABLES | k.variables), "default_on": k.default_on}
            for k in NOTIFICATION_KINDS
        ],
        "alert_kinds": [a.value for a in AlertKind],
    }
