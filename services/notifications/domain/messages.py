"""A message's route and life: channel choice with fallback, the test-order redirect, the WhatsApp 24-hour
window, forward-only status moves, the retry schedule, and the idempotency key."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.notifications.contracts.sandbox import CUSTOMER_SERVICE_WINDOW_HOURS
from services.notifications.contracts.vocabulary import MESSAGE_TRANSITIONS, MessageChannel, MessageStatus

C = MessageChannel

NAMESPACE = uuid.UUID("6f1c7a52-3f0e-5b8e-9d3a-0b6f6e0c1a11")
"""The uuid5 namespace of message keys (fixed forever: a key must come out the same after a restart)."""

PHONE_FIRST: tuple[MessageChannel, ...] = (C.whatsapp, C.sms, C.email)
EMAIL_FIRST: tuple[MessageChannel, ...] = (C.email, C.sms)
AUTO_ORDER: dict[str, tuple[MessageChannel, ...]] = {"whatsapp": PHONE_FIRST}
""""auto" channels by the order's channel: WhatsApp orders answer on WhatsApp, then SMS, then e-mail; every
other channel (web, marketplace, manual, pos, chat, test) by e-mail, then SMS."""

MAX_RETRY_DELAY = timedelta(hours=1)


def message_key(event_id: str | uuid.UUID, kind: str, channel: str, recipient: str) -> uuid.UUID:
    """The one key of (event, kind, channel, recipient): the message's id and its first idempotency key. The
    same event delivered twice, or handled again after a restart, gives the same key, so the same row."""
    return uuid.uuid5(NAMESPACE, f"{event_id}|{kind}|{channel}|{recipient.strip().lower()}")


def resend_key(message_id: uuid.UUID, resend: int) -> uuid.UUID:
    """Staff resent a failed message: a new idempotency key (the provider must not answer the failure again)."""
    return uuid.uuid5(NAMESPACE, f"{message_id}|resend|{resend}")


def _address(channel: MessageChannel, phone: str | None, email: str | None) -> str | None:
    return email if channel is C.email else phone


def channel_plan(order_channel: str, phone: str | None, email: str | None,
                 pinned: Sequence[str] | None = None) -> list[tuple[MessageChannel, str]]:
    """The channels to try, in order, with the customer's address on each: the first is used, the next ones are
    the fallbacks of a permanent failure. ``pinned`` (the settings' channels for the kind) replaces "auto". A
    channel the customer has no address for is skipped."""
    order = tuple(C(c) for c in pinned) if pinned else AUTO_ORDER.get(order_channel, EMAIL_FIRST)
    plan: list[tuple[MessageChannel, str]] = []
    for channel in order:
        address = _address(channel, phone, email)
        if address and all(c is not channel for c, _a in plan):
            plan.append((channel, address))
    return plan


def next_channel(plan: Sequence[tuple[MessageChannel, str]], tried: Collection[str]
                 ) -> tuple[MessageChannel, str] | None:
    """The first channel of the plan not tried yet (the fallback after a permanent failure), or None."""
    for channel, address in plan:
        if channel.value not in tried:
            return channel, address
    return None


@dataclass(frozen=True)
class Route:
    channel: MessageChannel
    recipient: str
    redirected: bool


def route(channel: MessageChannel, address: str, *, test: bool, test_recipient: str | None,
          sandbox_channels: Collection[str]) -> Route | None:
    """Where a customer message really goes. A test order never messages a real customer: e-mail goes to the
    test recipient; SMS/WhatsApp only to the sandbox provider, otherwise to the test recipient by e-mail. None:
    a test order and no test recipient to send it to (nothing is sent)."""
    if not test:
        return Route(channel, address, False)
    if channel is not C.email and channel.value in sandbox_channels:
        return Route(channel, address, True)
    if not test_recipient:
        return None
    return Route(C.email, test_recipient, True)


def in_window(last_inbound: datetime | None, now: datetime) -> bool:
    """Inside WhatsApp's customer-service window: the customer wrote less than 24 hours ago (free text allowed)."""
    return last_inbound is not None and now - last_inbound < timedelta(hours=CUSTOMER_SERVICE_WINDOW_HOURS)


def can_move(current: MessageStatus | str, new: MessageStatus | str) -> bool:
    """Forward only (``MESSAGE_TRANSITIONS``): a late ``delivered`` after ``read``, or a duplicate, is no move."""
    return MessageStatus(new) in MESSAGE_TRANSITIONS[MessageStatus(current)]


def backoff(attempt: int, base: float, jitter: float) -> timedelta:
    """Delay before attempt ``attempt + 1`` after ``attempt`` failed: base x 2^(attempt-1), at most an hour, then
    scaled by ``jitter`` in [0, 1) to between half and all of it (so messages of one outage spread out)."""
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")
    full = min(base * 2 ** max(attempt - 1, 0), MAX_RETRY_DELAY.total_seconds())
    return timedelta(seconds=full * (0.5 + jitter / 2))


def mask(recipient: str) -> str:
    """A recipient as events and logs show it: "+2165•••••12", "a•••@example.com"."""
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}•••@{domain}"
    digits = recipient.replace(" ", "")
    if len(digits) <= 6:
        return "•" * len(digits)
    return f"{digits[:5]}{'•' * (len(digits) - 7)}{digits[-2:]}"
