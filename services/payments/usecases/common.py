"""What every payments use case does the same way: record money on the aggregate, report broken invariants,
recompute and announce the status, emit events, and turn provider failures into client errors.

Every change follows one path: lock and load the order's payments (``store.load(..., for_update=True)``),
let the domain record the new money movements and check every invariant (:func:`commit`), save what changed
(``store.save``), and emit the events, all in one transaction.

Creating a payment link calls the provider before the transaction (``payments.create_payment_link``: decide
from a plain read, call, then record under the lock, deciding again). The other provider calls (capture, void,
refund) are made inside that transaction, while the order's row is locked. That is deliberate and safe because
every call carries an idempotency key derived from stable ids (order id + payment id + refund reference): if
the transaction then fails, or the process dies, the retry (the inbox redelivers the order event; the client
repeats the request with its Idempotency-Key) makes the same call with the same key and the provider replays
its first answer instead of moving money twice. The lock is held for one HTTP round trip (timeouts: 3 s
connect, 10 s read), which only delays other changes to the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from prometheus_client import Counter

from services.payments import domain
from services.payments.contracts import events as ev
from services.payments.provider import ProviderRequestError, ProviderUnavailable
from shared import outbox
from shared.db import Database
from shared.errors import NotAllowedInThisState

log = logging.getLogger("services.payments")

SERVICE = "payments"
Tx = psycopg.Connection[Any]
T = TypeVar("T")

# Alert on any increase: the order is on hold and a person must look at its money.
LEDGER_VIOLATIONS = Counter(
    "oms_payments_ledger_violations_total", "Ledger invariants found broken (the order is put on hold)", ["code"]
)


def now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def read(db: Database) -> Iterator[Tx]:
    """A connection for reads that need no transaction: autocommit, so no BEGIN and no COMMIT round trip
    (each statement sees the latest committed data). It goes back to the pool in transaction mode."""
    with db.pool.connection() as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            if not (conn.closed or conn.broken):  # a broken one is discarded by the pool anyway
                conn.autocommit = False


def emit(tx: Tx, p: domain.OrderPayments, event: ev.PaymentEvent, causation_id: str) -> None:
    oid = str(p.order_id)
    outbox.emit(tx, SERVICE, event, subject=oid, correlation_id=oid, causation_id=causation_id)


def base(p: domain.OrderPayments, at: datetime) -> dict[str, Any]:
    """The fields every payment event carries."""
    return {"order_id": p.order_id, "number": p.number, "test": p.test, "at": at}


def commit(
    tx: Tx,
    p: domain.OrderPayments,
    entries: Sequence[domain.LedgerEntry],
    causation_id: str,
    *,
    reason: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bool:
    """Record entries (idempotently), report invariant violations, refresh the status; True if anything new
    was recorded. The caller saves the aggregate."""
    recorded = p.record(entries, extra)
    if recorded.violations:
        report_violations(tx, p, recorded.violations, causation_id)
    # An authorization or capture can leave the status as it was (in_progress) yet change what the order
    # may do (go ahead on an authorization in full): announce it all the same.
    refresh_status(tx, p, causation_id, reason, announce=recorded.pending_changed)
    return recorded.fresh


def report_violations(
    tx: Tx, p: domain.OrderPayments, violations: Sequence[domain.Violation], causation_id: str
) -> None:
    reason = ("Payment ledger inconsistent: " + "; ".join(v.reason for v in violations))[:2000]
    log.error("order %s (#%s): %s", p.order_id, p.number, reason)
    for v in violations:
        LEDGER_VIOLATIONS.labels(v.code).inc()
    p.hold(reason)
    emit(tx, p, ev.PaymentLedgerViolation(**base(p, now()), reason=reason,
                                          violations=domain.errors_as_dicts(violations)), causation_id)


def refresh_status(
    tx: Tx, p: domain.OrderPayments, causation_id: str, reason: str | None = None, *, announce: bool = False
) -> None:
    """Recompute the status from the amounts and publish ``payment.status_changed`` if it (or, with
    ``announce``, what it allows) changed."""
    at = now()
    change = p.refresh_status(at, announce=announce)
    if change is None:
        return
    s = change.summary
    emit(tx, p, ev.PaymentStatusChanged(
        **base(p, at), status=s.status.value, previous_status=change.previous.value, captured=s.captured,
        refunded=s.refunded, balance_due=s.balance_due, overpaid=s.overpaid, authorized=s.pending,
        paid_at=change.paid_at, currency=p.currency, reason=reason,
    ), causation_id)


def refuse_when_closed(p: domain.OrderPayments, consequence: str) -> None:
    """No new money on an order that will never be fulfilled (money that still comes is given back): 409."""
    if not p.takes_new_money:
        raise NotAllowedInThisState(f"Order #{p.number} is {p.stage.value}; {consequence}",
                                order_id=str(p.order_id), stage=p.stage.value)


def provider_call(call: Callable[[], T]) -> T:
    """Run an event-driven provider call; an unknown outcome raises so the inbox retries with the same key."""
    try:
        return call()
    except ProviderUnavailable:
        raise  # retried by the subscriber's delay queues; the same idempotency key replays at the provider
    except ProviderRequestError as exc:
        log.error("provider refused an automatic call: %s", exc)
        raise
