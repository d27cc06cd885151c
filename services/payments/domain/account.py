"""The loaded payment aggregate: one order's payment facts, its ledger and its payment attempts.

The use cases load an :class:`OrderPayments` (``store.load``), call the functions below on it, and hand it
back to the store, which saves what changed (new ledger entries, new or changed attempts, the order's new
stage, method, status or hold). No use case edits a database row; every change of money goes through
:meth:`OrderPayments.record`, which checks every ledger invariant, and the status is only ever recomputed
from the amounts (:meth:`OrderPayments.refresh_status`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from services.orders.contracts.schemas import Stage
from services.payments.contracts.vocabulary import (
    CAPTURE_STAGES,
    CaptureMethod,
    CaptureStage,
    PaymentMethod,
    PaymentStatus,
)
from services.payments.domain.ledger import (
    EntryKind,
    Ledger,
    LedgerChange,
    LedgerEntry,
    LedgerSummary,
    PaymentOrder,
    Violation,
)
from shared.money import ZERO, MoneyError

CLOSED_STAGES: frozenset[Stage] = frozenset({Stage.cancelled, Stage.rejected})
"""Stages whose money is given back: open authorizations voided, captures refunded."""

NEVER_FULFILLED: frozenset[Stage] = CLOSED_STAGES | {Stage.abandoned}
"""Stages whose order will never be fulfilled: money that still arrives (an old link, a late 3-D Secure) goes
back at once."""

NO_NEW_PAYMENTS: frozenset[Stage] = NEVER_FULFILLED | {Stage.archived}
"""Stages where no new money is taken: no manual payment, no payment link, no capture."""


def capture_stages_from(stage: CaptureStage | Stage) -> frozenset[Stage]:
    """The capture stage and every later one (an order may be moved past it quickly)."""
    return frozenset(CAPTURE_STAGES[CAPTURE_STAGES.index(Stage(stage)) :])


@dataclass
class PaymentAttempt:
    """One way the customer paid or is paying: a card link (``card:<link>``) or money recorded by hand.

    ``status`` is the attempt's own (``open``, ``requires_action``, ``authorized``, ``succeeded``,
    ``failed``, ``canceled``, ``received``), not the order's payment status."""

    id: str
    method: PaymentMethod
    amount: Decimal
    status: str
    provider_ref: str | None = None
    link_id: str | None = None
    link_url: str | None = None
    capture_method: CaptureMethod = "automatic"
    created_at: datetime | None = None


@dataclass(frozen=True)
class Recorded:
    """What :meth:`OrderPayments.record` did: the entries that were new, and the violations to report."""

    new: tuple[LedgerEntry, ...]
    violations: tuple[Violation, ...]
    pending_changed: bool

    @property
    def fresh(self) -> bool:
        return bool(self.new)


@dataclass(frozen=True)
class StatusChange:
    """The status (or what it allows) changed: announce it with these figures."""

    previous: PaymentStatus
    summary: LedgerSummary
    paid_at: datetime | None


@dataclass
class OrderPayments:
    """The order as payments knows it (from the order events), with its ledger and payment attempts."""

    order_id: UUID
    number: int
    test: bool
    order: PaymentOrder
    payment_method: PaymentMethod | None
    stage: Stage
    status: PaymentStatus
    ledger: Ledger
    attempts: list[PaymentAttempt] = field(default_factory=list)
    paid_at: datetime | None = None
    on_hold_reason: str | None = None
    paid_out: set[str] = field(default_factory=set)
    # What changed since loading, for the store to save (then cleared by it).
    new_entries: list[tuple[LedgerEntry, Mapping[str, Any] | None]] = field(default_factory=list, repr=False)
    new_attempts: list[PaymentAttempt] = field(default_factory=list, repr=False)
    changed_attempts: set[str] = field(default_factory=set, repr=False)
    new_payouts: list[tuple[str, Any, str | None]] = field(default_factory=list, repr=False)
    order_changed: bool = field(default=False, repr=False)

    # -- facts -----------------------------------------------------------------------------------------

    @property
    def currency(self) -> str:
        return self.order.currency

    @property
    def total(self) -> Decimal:
        return self.order.amount_due

    @property
    def takes_new_money(self) -> bool:
        """False once the order will never be fulfilled (or is archived): no new payment, link or capture."""
        return self.stage not in NO_NEW_PAYMENTS

    @property
    def never_fulfilled(self) -> bool:
        return self.stage in NEVER_FULFILLED

    @property
    def waiting_for_customer(self) -> bool:
        """A card payment waiting for the customer at the provider (3-D Secure) counts as ``in_progress``."""
        return any(a.status == "requires_action" for a in self.attempts)

    def attempt(self, payment_id: str) -> PaymentAttempt | None:
        return next((a for a in self.attempts if a.id == payment_id), None)

    def attempt_by_link(self, link_id: str) -> PaymentAttempt | None:
        return next((a for a in self.attempts if a.link_id == link_id), None)

    def provider_payment_id(self, given: str) -> str:
        """The provider's payment id (what the ledger uses) for ours (``card:<link>``) or for itself."""
        found = self.attempt(given)
        return found.provider_ref if found is not None and found.provider_ref else given

    def manual_refund(self, reference: str) -> list[LedgerEntry]:
        """The entries of a refund staff must pay out by hand (empty if there is none by that reference)."""
        return [e for e in self.ledger.entries if e.kind is EntryKind.MANUAL_REFUND and e.reference == reference]

    def summary(self) -> LedgerSummary:
        """Totals and the computed status. A broken ledger (refunded > captured) has no status of its own:
        it keeps the last one (the violation is reported apart)."""
        try:
            return self.ledger.summary(self.total, in_progress=self.waiting_for_customer)
        except MoneyError:
            ledger = self.ledger
            return LedgerSummary(
                currency=ledger.currency, authorized=ZERO, captured=ledger.captured, refunded=ledger.refunded,
                voided=ZERO, failed=ZERO, pending=ZERO, net_paid=ledger.captured - ledger.refunded,
                balance_due=ZERO, overpaid=ZERO, status=self.status,
            )

    # -- changes ---------------------------------------------------------------------------------------

    def set_stage(self, stage: Stage) -> None:
        self.stage = Stage(stage)
        self.order_changed = True

    def set_method(self, method: PaymentMethod) -> None:
        self.payment_method = PaymentMethod(method)
        self.order_changed = True

    def hold(self, reason: str) -> None:
        """Put the order's payments on hold for a person to look at (a broken ledger invariant)."""
        self.on_hold_reason = reason[:2000]
        self.order_changed = True

    def add_attempt(self, attempt: PaymentAttempt) -> bool:
        """Add a payment attempt; one with the same id is already there (a retry) and changes nothing."""
        if self.attempt(attempt.id) is not None:
            return False
        self.attempts.append(attempt)
        self.new_attempts.append(attempt)
        return True

    def update_attempt(self, payment_id: str, *, status: str, provider_ref: str | None = None) -> None:
        found = self.attempt(payment_id)
        if found is None:
            return
        found.status = status
        found.provider_ref = provider_ref or found.provider_ref
        self.changed_attempts.add(found.id)

    def mark_provider_payment(self, provider_ref: str, status: str) -> None:
        """The provider's payment ``provider_ref`` reached ``status`` (e.g. captured: ``succeeded``)."""
        for a in self.attempts:
            if a.provider_ref == provider_ref:
                a.status = status
                self.changed_attempts.add(a.id)

    def mark_paid_out(self, reference: str, actor: Any, note: str | None) -> bool:
        """Staff paid out the manual refund ``reference``; False if it already was (idempotent)."""
        if reference in self.paid_out:
            return False
        self.paid_out.add(reference)
        self.new_payouts.append((reference, actor, note))
        return True

    def record(self, entries: Sequence[LedgerEntry], extra: Mapping[str, Any] | None = None) -> Recorded:
        """Record money movements (idempotently: known ones change nothing) and check every invariant.

        Violations are returned for reporting when something new was recorded, or when a movement came
        again with another amount (the first fact stands)."""
        before = self.ledger
        change = (
            before.record_all(entries, self.order)
            if entries
            else LedgerChange(before, True, before.check_invariants(self.order))
        )
        new = tuple(e for e in change.ledger.entries if before.find(e.key) is None)
        self.ledger = change.ledger
        self.new_entries.extend((e, extra) for e in new)
        report = bool(new) or any(v.code == "conflicting_duplicate" for v in change.violations)
        return Recorded(
            new=new,
            violations=tuple(change.violations) if report else (),
            pending_changed=change.ledger.pending() != before.pending(),
        )

    def refresh_status(self, now: datetime, *, announce: bool = False) -> StatusChange | None:
        """Recompute the status from the amounts; a change (or ``announce``) is returned to be published."""
        s = self.summary()
        paid_at = self.paid_at or (now if s.status is PaymentStatus.PAID else None)
        if not (announce or s.status != self.status or paid_at != self.paid_at):
            return None
        previous = self.status
        self.status, self.paid_at = s.status, paid_at
        self.order_changed = True
        return StatusChange(previous=previous, summary=s, paid_at=paid_at)


def placed(
    order_id: UUID, number: int, test: bool, order: PaymentOrder, payment_method: PaymentMethod | None, stage: Stage
) -> OrderPayments:
    """A newly placed order as payments records it: unpaid, nothing in its ledger. Every order starts
    ``unpaid`` here and on the orders side, unannounced; see :meth:`OrderPayments.refresh_status`."""
    return OrderPayments(
        order_id=order_id, number=number, test=test, order=order, payment_method=payment_method, stage=stage,
        status=PaymentStatus.UNPAID, ledger=Ledger(str(order_id), order.currency),
    )


__all__ = [
    "CLOSED_STAGES",
    "NEVER_FULFILLED",
    "NO_NEW_PAYMENTS",
    "OrderPayments",
    "PaymentAttempt",
    "Recorded",
    "StatusChange",
    "capture_stages_from",
    "placed",
]
