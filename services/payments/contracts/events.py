"""Events the payments service publishes (the ``data`` of the CloudEvent; subject = the order id).

Every event carries ``order_id``, ``number`` and ``test`` (like the order events) so a consumer can act on
it without calling back. Money is a decimal string with the currency alongside. The orders service binds
the exact types it acts on (its ``PAYMENT_EVENT_HANDLERS``) and applies them in per-order order using each
event's ``typecounts``; integrators bind ``payment.#`` and ``refund.#`` on ``oms.events``, so every type
published here starts with ``payment.`` or ``refund.``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from pydantic import Field

from shared.envelope import EventModel


class PaymentEvent(EventModel):
    """Fields every payment event has. Not an event type itself (no ``event_type``)."""

    order_id: UUID
    number: int
    test: bool = False
    at: datetime


class PaymentStatusChanged(PaymentEvent):
    """The order's payment status changed (computed from the ledger amounts)."""

    event_type: ClassVar[str] = "payment.status_changed.v1"

    status: str
    previous_status: str | None = None
    captured: Decimal
    refunded: Decimal
    balance_due: Decimal
    overpaid: Decimal
    # Card money authorized but not captured yet (authorize-then-capture); covering ``balance_due`` lets
    # the order go ahead before the capture.
    authorized: Decimal = Decimal(0)
    paid_at: datetime | None = None
    currency: str
    reason: str | None = None


class PaymentLinkCreated(PaymentEvent):
    """A card payment link was created for the order (send it to the customer)."""

    event_type: ClassVar[str] = "payment.link_created.v1"

    payment_id: str
    link_id: str
    url: str
    amount: Decimal
    currency: str


class PaymentReceived(PaymentEvent):
    """Money arrived: a card capture or a manual receipt recorded by staff."""

    event_type: ClassVar[str] = "payment.received.v1"

    payment_id: str
    method: str
    amount: Decimal
    currency: str
    reference: str | None = None


class PaymentFailed(PaymentEvent):
    """A card payment attempt was declined or failed authentication; the order stays unpaid."""

    event_type: ClassVar[str] = "payment.failed.v1"

    payment_id: str
    amount: Decimal
    currency: str
    decline_code: str | None = None


class RefundCompleted(PaymentEvent):
    """Money was given back. ``manual`` means staff must move (part of) it by hand (cash, transfer)."""

    event_type: ClassVar[str] = "refund.completed.v1"

    reference: str
    amount: Decimal
    currency: str
    lines: dict[str, int] = Field(default_factory=dict)
    shipping: Decimal = Decimal(0)
    manual: bool = False
    manual_amount: Decimal = Decimal(0)
    allocations: list[dict[str, Any]] = Field(default_factory=list)
    reason: str | None = None


class RefundPaidOut(PaymentEvent):
    """Staff paid out a refund of money taken by hand (cash, transfer, POS): nothing is left to do for it."""

    event_type: ClassVar[str] = "refund.paid_out.v1"

    reference: str
    amount: Decimal
    currency: str
    note: str | None = None


class PaymentVoided(PaymentEvent):
    """An authorization was released without taking the money (order cancelled, rejected or abandoned)."""

    event_type: ClassVar[str] = "payment.voided.v1"

    payment_id: str
    amount: Decimal
    currency: str
    reason: str | None = None


class PaymentLedgerViolation(PaymentEvent):
    """The order's ledger broke an invariant: the order must be put on hold and looked at by staff."""

    event_type: ClassVar[str] = "payment.ledger_violation.v1"

    reason: str
    violations: list[dict[str, Any]] = Field(default_factory=list)


PAYMENT_EVENTS: tuple[type[PaymentEvent], ...] = (
    PaymentStatusChanged,
    PaymentLinkCreated,
    PaymentReceived,
    PaymentFailed,
    RefundCompleted,
    RefundPaidOut,
    PaymentVoided,
    PaymentLedgerViolation,
)
