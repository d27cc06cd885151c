"""What orders does with each event of the payments service: one handler per event model, listed in
``PAYMENT_EVENT_HANDLERS``.

Payments own the payment status; orders keep a copy (to list and sort by ``paid_at``), confirm a paid card
order automatically, put an order on hold when its ledger is found broken, and record refunds, pay-outs and
released authorizations in the order's history. Each event is applied once and in order (``shared.inbox``).

Orders bind exactly the types of ``PAYMENT_EVENT_HANDLERS`` (``PAYMENT_EVENT_TYPES``) and take them in batches:
one transaction per batch, ordered per order by the counts of those types (``typecounts``), so the payments
events orders have nothing to do with (a link created, money received) never reach them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from services.orders import domain, store
from services.orders.usecases.common import Tx, now, save
from services.payments.contracts import events as pev
from shared import inbox
from shared.catalog import parse_data
from shared.db import Database
from shared.envelope import Envelope

PAYMENTS_ACTOR = domain.PAYMENTS
PAYMENTS_CONSUMER = "orders.payments"


def handle_payment_events(db: Database, events: Sequence[Envelope]) -> list[inbox.Outcome]:
    """Apply a batch of payments events in one transaction, each once and in per-order order."""
    return inbox.process_batch(db, PAYMENTS_CONSUMER, events, apply_payment_event, types=PAYMENT_EVENT_TYPES)


def handle_payment_event(db: Database, env: Envelope) -> inbox.Outcome:
    """Apply one payments event once and in order (a batch of one)."""
    return handle_payment_events(db, [env])[0]


def apply_payment_event(tx: Tx, env: Envelope) -> None:
    """Payments own the payment status; orders keep a copy (list, sort by paid_at) and act on it.

    The handler for the event's model is looked up in ``PAYMENT_EVENT_HANDLERS``; an event orders has no
    handler for (a payment link was created, say) is consumed and ignored.
    """
    data = parse_data(env)
    handler = PAYMENT_EVENT_HANDLERS.get(type(data))
    if handler is None:
        return
    order = store.load(tx, env.subject, for_update=True)
    handler(tx, env, order, data, now())


def _on_status_changed(
    tx: Tx, env: Envelope, order: domain.Order, data: pev.PaymentStatusChanged, now: datetime
) -> None:
    """Project ``payment_status``/``paid_at``/``payment_authorized``; a card order paid (or authorized in
    full) with address and note (added or skipped) is confirmed automatically (history + stage event)."""
    paid_at = data.paid_at or order.paid_at
    authorized = data.authorized > 0 and data.authorized >= data.balance_due
    projected = domain.project_payment(order, data.status, paid_at, authorized)
    confirmed = domain.auto_confirm(projected, now)
    if confirmed is None:
        store.set_payment_projection(tx, projected, data.status, paid_at)
        return
    save(tx, confirmed.as_outcome(), previous_version=order.version, causation_id=str(env.id))


def _on_ledger_violation(
    tx: Tx, env: Envelope, order: domain.Order, data: pev.PaymentLedgerViolation, now: datetime
) -> None:
    """The order goes on hold with the reason (when it can), so staff see it; else the history says it."""
    reason = data.reason[:1000]
    if domain.can_transition(order, domain.Stage.on_hold, PAYMENTS_ACTOR):
        moved = domain.transition(order, domain.Stage.on_hold, PAYMENTS_ACTOR, reason, now)
        save(tx, moved.as_outcome(), previous_version=order.version, causation_id=str(env.id))
    else:
        _record(tx, env, order, "payment_ledger_violation", reason, {"violations": data.violations}, now)


def _on_refund_completed(tx: Tx, env: Envelope, order: domain.Order, data: pev.RefundCompleted, now: datetime) -> None:
    """The refund is recorded in the order's history (``refund_completed``)."""
    details = {
        "reference": data.reference,
        "amount": str(data.amount),
        "currency": data.currency,
        "manual": data.manual,
        "manual_amount": str(data.manual_amount),
        "lines": data.lines,
        "allocations": data.allocations,
    }
    _record(tx, env, order, "refund_completed", data.reason, details, now)


def _on_refund_paid_out(tx: Tx, env: Envelope, order: domain.Order, data: pev.RefundPaidOut, now: datetime) -> None:
    """A manual refund staff paid out is recorded in the order's history (``refund_paid_out``)."""
    details = {"reference": data.reference, "amount": str(data.amount), "currency": data.currency}
    _record(tx, env, order, "refund_paid_out", data.note, details, now)


def _on_payment_voided(tx: Tx, env: Envelope, order: domain.Order, data: pev.PaymentVoided, now: datetime) -> None:
    """A released card authorization is recorded in the order's history (``payment_voided``)."""
    details = {"payment_id": data.payment_id, "amount": str(data.amount), "currency": data.currency}
    _record(tx, env, order, "payment_voided", data.reason, details, now)


PaymentEventHandler = Callable[[Tx, Envelope, domain.Order, Any, datetime], None]

PAYMENT_EVENT_HANDLERS: dict[type[Any], PaymentEventHandler] = {
    pev.PaymentStatusChanged: _on_status_changed,
    pev.PaymentLedgerViolation: _on_ledger_violation,
    pev.RefundCompleted: _on_refund_completed,
    pev.RefundPaidOut: _on_refund_paid_out,
    pev.PaymentVoided: _on_payment_voided,
}
"""The payments events orders acts on, each with its handler (the order is loaded, locked, for it)."""

PAYMENT_EVENT_TYPES: tuple[str, ...] = tuple(sorted(model.event_type for model in PAYMENT_EVENT_HANDLERS))
"""What orders subscribe to: exactly the types of ``PAYMENT_EVENT_HANDLERS`` (the inbox orders by their counts)."""


def _record(
    tx: Tx,
    env: Envelope,
    order: domain.Order,
    action: str,
    reason: str | None,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """Write what payments reported into the order's history (new version, no event of ours)."""
    outcome = domain.record(order, PAYMENTS_ACTOR, now, action, reason, data)
    save(tx, outcome, previous_version=order.version, causation_id=str(env.id))
