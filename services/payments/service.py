"""The payments service: use cases (plain functions of a ``Database`` and a ``PaymentProvider``) and the
thin Nameko class.

Every change follows one path: lock the order's ``payment_orders`` row, load its ledger, let the pure
domain (``services.payments.domain``) record the new money movements and check every invariant, store the
new entries, recompute the status from the amounts, and emit the events, all in one transaction.

Provider calls (create link, void, refund) are made inside that transaction, while the order's row is
locked. That is deliberate and safe because every call carries an idempotency key derived from stable ids
(order id + payment id + refund reference): if the transaction then fails, or the process dies, the retry
(the inbox redelivers the order event; the client repeats the request with its Idempotency-Key) makes the
same call with the same key and the provider replays its first answer instead of moving money twice. The
lock is held for one HTTP round trip (timeouts: 3 s connect, 10 s read), which only delays other changes to
the same order.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from prometheus_client import Counter

from services.payments import domain, store
from services.payments.contracts import events as ev
from services.payments.contracts.schemas import (
    CapturePayment,
    CreatePaymentLink,
    MarkRefundPaidOut,
    RecordManualPayment,
    RefundCommand,
)
from services.payments.provider import (
    CaptureMethod,
    HttpSandboxProvider,
    PaymentProvider,
    ProviderDeclined,
    ProviderRequestError,
    ProviderUnavailable,
    WebhookEvent,
    WebhookVerificationError,
)
from services.payments.settings import webhook_secret
from shared import inbox, outbox
from shared.catalog import parse_data
from shared.config import CAPTURE_STAGES, get_settings
from shared.consumer import subscribe
from shared.db import Database
from shared.envelope import Envelope
from shared.errors import DomainError, IllegalTransition, InvalidRequest, NotFound, parse
from shared.nameko_ext import DatabaseProvider, OutboxRelayProvider

log = logging.getLogger(__name__)

SERVICE = "payments"
CONSUMER = "payments.orders"
Tx = psycopg.Connection[Any]

CLOSED_STAGES = frozenset({"cancelled", "rejected"})
# Stages whose order will never be fulfilled: money that still arrives (an old link, a late 3-D Secure)
# goes back at once.
NEVER_FULFILLED = CLOSED_STAGES | {"abandoned"}
NO_NEW_PAYMENTS = frozenset({"cancelled", "rejected", "abandoned", "archived"})


# Alert on any increase: the order is on hold and a person must look at its money.
LEDGER_VIOLATIONS = Counter(
    "oms_payments_ledger_violations_total", "Ledger invariants found broken (the order is put on hold)", ["code"]
)


class ProviderFailed(DomainError):
    """The card provider could not be reached or refused the request (nothing was recorded)."""

    status = 502
    title = "Payment provider error"


def _now() -> datetime:
    return datetime.now(UTC)


def _emit(tx: Tx, row: Mapping[str, Any], event: ev.PaymentEvent, causation_id: str) -> None:
    oid = str(row["order_id"])
    outbox.emit(tx, SERVICE, event, subject=oid, correlation_id=oid, causation_id=causation_id)


def _base(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    return {"order_id": row["order_id"], "number": row["number"], "test": row["test"], "at": now}


def _money(value: Decimal, row: Mapping[str, Any]) -> Decimal:
    return domain.quantize(value, row["currency"])


# ------------------------------------------------------------------------------------------------ core


def _commit(
    tx: Tx,
    row: dict[str, Any],
    ledger: domain.Ledger,
    entries: list[domain.LedgerEntry],
    causation_id: str,
    *,
    reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[domain.Ledger, bool]:
    """Record entries (idempotently), report invariant violations, refresh the status. Returns the new
    ledger and whether anything new was recorded."""
    porder = store.payment_order(row)
    change = ledger.record_all(entries, porder) if entries else domain.LedgerChange(
        ledger, True, ledger.check_invariants(porder)
    )
    new = [e for e in change.ledger.entries if ledger.find(e.key) is None]
    if new:
        store.insert_entries(tx, row["order_id"], new, extra)
    if change.violations and (new or any(v.code == "conflicting_duplicate" for v in change.violations)):
        _report_violations(tx, row, change.violations, causation_id)
    # An authorization or capture can leave the status as it was (in_progress) yet change what the order
    # may do (go ahead on an authorization in full): announce it all the same.
    _refresh_status(tx, row, change.ledger, causation_id, reason, announce=change.ledger.pending() != ledger.pending())
    return change.ledger, bool(new)


def _report_violations(tx: Tx, row: dict[str, Any], violations: list[domain.Violation], causation_id: str) -> None:
    reason = "Payment ledger inconsistent: " + "; ".join(v.reason for v in violations)
    log.error("order %s (#%s): %s", row["order_id"], row["number"], reason)
    for v in violations:
        LEDGER_VIOLATIONS.labels(v.code).inc()
    store.set_hold_reason(tx, row["order_id"], reason[:2000])
    _emit(
        tx,
        row,
        ev.PaymentLedgerViolation(
            **_base(row, _now()), reason=reason[:2000], violations=domain.errors_as_dicts(violations)
        ),
        causation_id,
    )


def _summary_of(tx: Tx, row: Mapping[str, Any], ledger: domain.Ledger) -> domain.LedgerSummary:
    try:
        return ledger.summary(store.order_total(row), in_progress=store.any_in_progress(tx, row["order_id"]))
    except domain.MoneyError:
        # A broken ledger (refunded > captured) has no status of its own; keep the last one (reported apart).
        return _broken(row, ledger)


def _broken(row: Mapping[str, Any], ledger: domain.Ledger) -> domain.LedgerSummary:
    zero = Decimal(0)
    return domain.LedgerSummary(
        currency=ledger.currency, authorized=zero, captured=ledger.captured, refunded=ledger.refunded, voided=zero,
        failed=zero, pending=zero, net_paid=ledger.captured - ledger.refunded, balance_due=zero, overpaid=zero,
        status=domain.PaymentStatus(row["status"]),
    )


def _refresh_status(
    tx: Tx,
    row: dict[str, Any],
    ledger: domain.Ledger,
    causation_id: str,
    reason: str | None = None,
    *,
    announce: bool = False,
) -> domain.LedgerSummary:
    s = _summary_of(tx, row, ledger)
    now = _now()
    paid_at = row["paid_at"] or (now if s.status is domain.PaymentStatus.PAID else None)
    if announce or s.status.value != row["status"] or paid_at != row["paid_at"]:
        store.set_status(tx, row["order_id"], s.status.value, paid_at)
        _emit(
            tx,
            row,
            ev.PaymentStatusChanged(
                **_base(row, now),
                status=s.status.value,
                previous_status=row["status"],
                captured=s.captured,
                refunded=s.refunded,
                balance_due=s.balance_due,
                overpaid=s.overpaid,
                authorized=s.pending,
                paid_at=paid_at,
                currency=row["currency"],
                reason=reason,
            ),
            causation_id,
        )
        row["status"], row["paid_at"] = s.status.value, paid_at
    return s


def _summary(tx: Tx, row: dict[str, Any], duplicate: bool = False) -> dict[str, Any]:
    ledger = store.load_ledger(tx, row)
    s = _summary_of(tx, row, ledger)
    entries = store.entry_rows(tx, row["order_id"])
    paid_out = store.paid_out_references(tx, row["order_id"])
    return {
        "order_id": str(row["order_id"]),
        "number": row["number"],
        "currency": row["currency"],
        "total": str(store.order_total(row)),
        "payment_method": row["payment_method"],
        "stage": row["stage"],
        "status": row["status"],
        "paid_at": row["paid_at"].isoformat() if row["paid_at"] else None,
        "on_hold_reason": row["on_hold_reason"],
        **{k: v for k, v in s.as_json().items() if k not in ("currency", "status")},
        "payments": [
            {
                "id": p["id"],
                "method": p["method"],
                "status": p["status"],
                "amount": str(_money(p["amount"], row)),
                "provider_ref": p["provider_ref"],
                "link_id": p["link_id"],
                "link_url": p["link_url"],
                "created_at": p["created_at"].isoformat(),
            }
            for p in store.payments_of(tx, row["order_id"])
        ],
        "ledger": [
            {
                "kind": e["kind"],
                "amount": str(_money(e["amount"], row)),
                "currency": e["currency"],
                "payment_id": e["payment_id"],
                "reference": e["reference"],
                "at": e["at"].isoformat(),
                "manual_action_required": e["kind"] == domain.EntryKind.MANUAL_REFUND.value
                and e["reference"] not in paid_out,
                "detail": e["detail"],
            }
            for e in entries
        ],
        "duplicate": duplicate,
    }


# ------------------------------------------------------------------------------------------------ order events


def handle_order_event(db: Database, provider: PaymentProvider, env: Envelope) -> inbox.Outcome:
    """Apply one ``order.*`` event once and in order (the inbox dedupes and orders by sequence)."""
    return inbox.process(db, CONSUMER, env, lambda tx, e: apply_order_event(tx, provider, e))


def apply_order_event(tx: Tx, provider: PaymentProvider, env: Envelope) -> None:
    from services.orders.contracts import events as order_events

    data = parse_data(env)
    causation = str(env.id)
    if isinstance(data, order_events.OrderPlaced):
        lines = [
            {"line_id": str(i + 1), "sku": it.sku, "name": it.name, "quantity": it.quantity,
             "unit_price": str(it.unit_price)}
            for i, it in enumerate(data.items)
        ]
        created = store.insert_order(
            tx,
            {
                "order_id": data.order_id,
                "number": data.number,
                "currency": data.currency,
                "total": data.totals.total,
                "lines": lines,
                "shipping": data.totals.shipping,
                "discount": data.totals.discount,
                "tax": data.totals.tax,
                "payment_method": data.payment_method.value if data.payment_method else None,
                "test": data.test,
                "stage": data.stage.value,
            },
        )
        # Every order starts ``unpaid`` here and on the orders side, unannounced; only an order with nothing
        # to pay (total 0) starts otherwise, and that is a change to announce.
        initial = domain.compute_status(data.totals.total, Decimal(0), Decimal(0))
        if created and initial is not domain.PaymentStatus.UNPAID:
            placed = store.load_order(tx, data.order_id, for_update=True)
            _refresh_status(tx, placed, store.load_ledger(tx, placed), causation, "nothing to pay")
        return
    row = store.find_order(tx, env.subject, for_update=True)
    if row is None:
        if env.type != order_events.OrderPlaced.event_type:
            log.warning("%s for order %s, which payments never saw placed; ignored", env.type, env.subject)
        return
    if isinstance(data, order_events.OrderPaymentMethodSet):
        store.set_method(tx, row["order_id"], data.method.value)
        row["payment_method"] = data.method.value
        if data.paid:
            _legacy_paid(tx, row, data.method.value, data.paid_at or data.at, causation)
    elif isinstance(data, order_events.OrderStageChanged):
        store.set_stage(tx, row["order_id"], data.to_stage.value)
        row["stage"] = data.to_stage.value
        if data.to_stage.value in CLOSED_STAGES:
            settle_closed_order(tx, provider, row, data.to_stage.value, causation)
        elif data.to_stage.value in capture_stages():
            capture_open_authorizations(tx, provider, row, causation)


def _legacy_paid(tx: Tx, row: dict[str, Any], method: str, at: datetime, causation: str) -> None:
    """``paid=true`` from the orders API: the money arrived outside payments; record it as a manual receipt."""
    total = store.order_total(row)
    if total <= 0:
        return
    ledger = store.load_ledger(tx, row)
    entry = domain.LedgerEntry(
        kind=domain.EntryKind.MANUAL_RECEIVED, amount=total, currency=row["currency"], payment_id="legacy-paid",
        reference="order.payment_method_set", at=at, method=domain.PaymentMethod(method),
    )
    store.insert_payment(
        tx, payment_id=f"legacy-paid:{row['order_id']}", order_id=row["order_id"], method=method, amount=total,
        status="received",
    )
    _, fresh = _commit(tx, row, ledger, [entry], causation, reason="marked paid on the order")
    if fresh:
        _emit(tx, row, ev.PaymentReceived(**_base(row, _now()), payment_id="legacy-paid", method=method,
                                          amount=total, currency=row["currency"]), causation)


def settle_closed_order(tx: Tx, provider: PaymentProvider, row: dict[str, Any], stage: str, causation: str) -> None:
    """Cancelled or rejected: void open card authorizations, refund card captures through the provider and
    record manual refunds for staff to pay out by hand. Idempotent: keys and references derive from ids."""
    oid = row["order_id"]
    ledger = store.load_ledger(tx, row)
    now = _now()
    entries: list[domain.LedgerEntry] = []
    for pid, uncaptured in ledger.open_authorizations():
        _provider_call(lambda pid=pid: provider.void(pid, idempotency_key=f"{oid}:void:{pid}"))
        entries.append(domain.LedgerEntry(
            kind=domain.EntryKind.VOIDED, amount=uncaptured, currency=row["currency"], payment_id=pid,
            reference=f"void:{stage}", at=now,
        ))
    # One reference per trigger (the order event, or the webhook of money that came late): unique per
    # refund for whoever reads refund.completed.v1, and the same when that trigger is retried.
    reference = f"auto-refund:{stage}:{causation}"
    allocations: list[dict[str, Any]] = []
    manual_amount = Decimal(0)
    for pid, amount, is_card in ledger.refundable_by_payment():
        if is_card:
            _provider_call(lambda pid=pid, amount=amount: provider.refund(
                pid, amount, idempotency_key=f"{oid}:refund:{reference}:{pid}", reference=reference
            ))
        else:
            manual_amount += amount
        entries.append(domain.LedgerEntry(
            kind=domain.EntryKind.REFUNDED if is_card else domain.EntryKind.MANUAL_REFUND, amount=amount,
            currency=row["currency"], payment_id=pid, reference=reference, at=now,
        ))
        allocations.append({"payment_id": pid, "amount": str(amount), "via_provider": is_card})
    if not entries:
        return
    _, fresh = _commit(tx, row, ledger, entries, causation, reason=f"order {stage}",
                       extra={"automatic": True, "reason": f"order {stage}"})
    for e in entries if fresh else []:
        if e.kind is domain.EntryKind.VOIDED:
            _emit(tx, row, ev.PaymentVoided(**_base(row, now), payment_id=e.payment_id, amount=e.amount,
                                            currency=row["currency"], reason=f"order {stage}"), causation)
    if fresh and allocations:
        total = sum((Decimal(a["amount"]) for a in allocations), Decimal(0))
        _emit(tx, row, ev.RefundCompleted(
            **_base(row, now), reference=reference, amount=total, currency=row["currency"],
            manual=manual_amount > 0, manual_amount=manual_amount, allocations=allocations,
            reason=f"order {stage}",
        ), causation)


def capture_stages() -> frozenset[str]:
    """The configured capture stage and every later one (an order may be moved past it quickly)."""
    return frozenset(CAPTURE_STAGES[CAPTURE_STAGES.index(get_settings().payment_capture_stage):])


def capture_open_authorizations(tx: Tx, provider: PaymentProvider, row: dict[str, Any], causation: str) -> None:
    """Authorize-then-capture: the order reached the capture stage; take the money authorized at checkout.
    Idempotent: nothing open means nothing to do, and the provider key derives from the payment id."""
    ledger = store.load_ledger(tx, row)
    oid = row["order_id"]
    entries: list[domain.LedgerEntry] = []
    captures: list[tuple[str, Decimal]] = []
    for pid, uncaptured in ledger.open_authorizations():
        _provider_call(lambda pid=pid, rest=uncaptured: provider.capture(
            pid, idempotency_key=f"{oid}:capture:{pid}:{rest}"
        ))
        entries += ledger.capture_entries(pid, uncaptured, _now())
        captures.append((pid, uncaptured))
    _record_captures(tx, row, ledger, entries, captures, causation, f"captured as the order was {row['stage']}")


def _record_captures(
    tx: Tx,
    row: dict[str, Any],
    ledger: domain.Ledger,
    entries: list[domain.LedgerEntry],
    captures: list[tuple[str, Decimal]],
    causation: str,
    reason: str,
    actor: Any = None,
) -> None:
    if not entries:
        return
    _, fresh = _commit(tx, row, ledger, entries, causation, reason=reason, extra={"actor": actor} if actor else None)
    for pid, amount in captures:
        store.set_provider_payment_status(tx, row["order_id"], pid, "succeeded")
        if fresh:
            _emit(tx, row, ev.PaymentReceived(**_base(row, _now()), payment_id=pid, method="card", amount=amount,
                                              currency=row["currency"], reference="capture"), causation)


def _provider_call(call: Any) -> Any:
    """Run an event-driven provider call; an unknown outcome raises so the inbox retries with the same key."""
    try:
        return call()
    except ProviderUnavailable:
        raise  # retried by the subscriber's delay queues; the same idempotency key replays at the provider
    except ProviderRequestError as exc:
        log.error("provider refused an automatic call: %s", exc)
        raise


# ------------------------------------------------------------------------------------------------ RPC use cases


def _refuse_when_closed(row: Mapping[str, Any], consequence: str) -> None:
    """No new money on an order that will never be fulfilled (money that still comes is given back)."""
    if row["stage"] in NO_NEW_PAYMENTS:
        raise IllegalTransition(f"Order #{row['number']} is {row['stage']}; {consequence}",
                                order_id=str(row["order_id"]), stage=row["stage"])


def summary(db: Database, order_id: str) -> dict[str, Any]:
    with db.transaction() as tx:
        return _summary(tx, store.load_order(tx, order_id))


def record_manual_payment(db: Database, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(RecordManualPayment, command, "manual payment")
    with db.transaction() as tx:
        row = store.load_order(tx, order_id, for_update=True)
        method = cmd.method or row["payment_method"]
        if method is None or not domain.is_manual(method):
            raise InvalidRequest(
                f"Order #{row['number']} is paid by {method or 'no method yet'}; record a manual payment with "
                "method cash_on_delivery, bank_transfer or pos_on_delivery.",
                order_id=str(row["order_id"]),
                errors=[{"field": "method", "reason": "a manual payment method is needed"}],
            )
        _refuse_when_closed(row, "no payment can be recorded on it.")
        try:
            amount = domain.parse_amount(cmd.amount, row["currency"])
        except domain.MoneyError as exc:
            raise InvalidRequest(str(exc), errors=[{"field": "amount", "reason": str(exc)}]) from None
        if amount <= 0:
            raise InvalidRequest("The amount must be positive.", errors=[{"field": "amount", "reason": "must be > 0"}])
        reference = cmd.reference or f"manual-{uuid.uuid4().hex[:12]}"
        payment_id = f"manual:{reference}"
        ledger = store.load_ledger(tx, row)
        existing = ledger.find((domain.EntryKind.MANUAL_RECEIVED, payment_id, reference))
        if existing is not None and existing.amount == amount:
            return _summary(tx, row, duplicate=True)
        store.insert_payment(tx, payment_id=payment_id, order_id=row["order_id"], method=method, amount=amount,
                             status="received")
        entry = domain.LedgerEntry(
            kind=domain.EntryKind.MANUAL_RECEIVED, amount=amount, currency=row["currency"], payment_id=payment_id,
            reference=reference, at=_now(), method=domain.PaymentMethod(method),
        )
        causation = f"command:record_manual_payment:{reference}"
        _, fresh = _commit(tx, row, ledger, [entry], causation, reason=f"{method} received",
                           extra={"actor": actor})
        if fresh:
            _emit(tx, row, ev.PaymentReceived(**_base(row, _now()), payment_id=payment_id, method=method,
                                              amount=amount, currency=row["currency"], reference=reference),
                  causation)
        return _summary(tx, row)


def create_payment_link(
    db: Database, provider: PaymentProvider, order_id: str, actor: Any, command: Any = None
) -> dict[str, Any]:
    cmd = parse(CreatePaymentLink, command or {}, "payment link")
    capture_method = cmd.capture_method or get_settings().payment_capture
    with db.transaction() as tx:
        row = store.load_order(tx, order_id, for_update=True)
        _refuse_when_closed(row, "it cannot be paid any more.")
        ledger = store.load_ledger(tx, row)
        s = _summary_of(tx, row, ledger)
        if s.balance_due <= 0:
            raise InvalidRequest(
                f"Order #{row['number']} has nothing left to pay (status {s.status.value}).",
                order_id=str(row["order_id"]), status=s.status.value,
            )
        payments = store.payments_of(tx, row["order_id"])
        for p in payments:  # an open link for what is still due is reused: asking twice sends one link
            if (p["link_id"] and p["status"] in ("open", "failed") and _money(p["amount"], row) == s.balance_due
                    and p["capture_method"] == capture_method):
                return _link_view(row, p)
        n = sum(1 for p in payments if p["link_id"])
        try:
            link = provider.create_payment_link(
                s.balance_due, row["currency"], str(row["order_id"]),
                idempotency_key=f"{row['order_id']}:link:{n + 1}:{s.balance_due}:{capture_method}",
                capture_method=CaptureMethod(capture_method),
            )
        except (ProviderUnavailable, ProviderRequestError) as exc:
            raise ProviderFailed(f"The payment provider could not create a link: {exc}",
                                 order_id=str(row["order_id"])) from None
        payment_id = f"card:{link.id}"
        store.insert_payment(tx, payment_id=payment_id, order_id=row["order_id"], method="card",
                             amount=link.amount, status="open", link_id=link.id, link_url=link.url,
                             capture_method=capture_method)
        _emit(tx, row, ev.PaymentLinkCreated(**_base(row, _now()), payment_id=payment_id, link_id=link.id,
                                             url=link.url, amount=link.amount, currency=link.currency),
              f"command:create_payment_link:{link.id}")
        made = store.payment_by_link(tx, link.id)
        assert made is not None
        return _link_view(row, made)


def _link_view(row: Mapping[str, Any], p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "order_id": str(row["order_id"]),
        "payment_id": p["id"],
        "link_id": p["link_id"],
        "url": p["link_url"],
        "amount": str(_money(p["amount"], row)),
        "currency": row["currency"],
        "status": p["status"],
        "capture_method": p["capture_method"],
    }


def capture_payment(db: Database, provider: PaymentProvider, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
    """Staff capture authorized card money now (all of it, or part: the rest of that authorization is
    released). Nothing is recorded unless the provider confirms the capture."""
    cmd = parse(CapturePayment, command or {}, "capture")
    with db.transaction() as tx:
        row = store.load_order(tx, order_id, for_update=True)
        _refuse_when_closed(row, "its authorizations are voided, not captured.")
        ledger = store.load_ledger(tx, row)
        open_ = ledger.open_authorizations()
        if cmd.payment_id is not None:
            wanted = store.provider_payment_id(tx, row["order_id"], cmd.payment_id)
            open_ = [(pid, rest) for pid, rest in open_ if pid == wanted]
        if not open_:
            raise InvalidRequest(
                f"Order #{row['number']} has no authorized card payment to capture"
                + (f" with id {cmd.payment_id}." if cmd.payment_id else "."),
                order_id=str(row["order_id"]),
                errors=[{"field": "payment_id", "reason": "no open authorization"}],
            )
        if cmd.amount is not None and len(open_) > 1:
            raise InvalidRequest("Several authorizations are open; name the payment_id to capture an amount.",
                                 errors=[{"field": "payment_id", "reason": "required with amount"}])
        entries: list[domain.LedgerEntry] = []
        captures: list[tuple[str, Decimal]] = []
        oid = row["order_id"]
        for pid, rest in open_:
            try:
                amount = rest if cmd.amount is None else domain.parse_amount(cmd.amount, row["currency"])
            except domain.MoneyError as exc:
                raise InvalidRequest(str(exc), errors=[{"field": "amount", "reason": str(exc)}]) from None
            if not 0 < amount <= rest:
                raise InvalidRequest(
                    f"Capture {amount} {row['currency']}: it must be positive and at most the {rest} authorized.",
                    errors=[{"field": "amount", "reason": f"must be > 0 and <= {rest}"}],
                )
            try:
                provider.capture(pid, None if amount == rest else amount,
                                 idempotency_key=f"{oid}:capture:{pid}:{amount}")
            except (ProviderUnavailable, ProviderRequestError, ProviderDeclined) as exc:
                raise ProviderFailed(f"The payment provider did not capture {pid}: {exc}",
                                     order_id=str(oid), payment_id=pid) from None
            entries += ledger.capture_entries(pid, amount, _now())
            captures.append((pid, amount))
        _record_captures(tx, row, ledger, entries, captures, f"command:capture:{oid}", "captured by staff", actor)
        return _summary(tx, row)


def manual_refunds(db: Database, pending: bool = True, limit: int = 100) -> dict[str, Any]:
    """The staff worklist: refunds of money taken by hand, still to pay out (or all of them)."""
    with db.transaction() as tx:
        rows = store.manual_refunds(tx, pending=pending, limit=max(1, min(int(limit), 1000)))
    return {"items": [
        {**r, "order_id": str(r["order_id"]), "amount": str(domain.quantize(r["amount"], r["currency"])),
         "at": r["at"].isoformat(), "paid_out_at": r["paid_out_at"].isoformat() if r["paid_out_at"] else None}
        for r in rows
    ]}


def mark_refund_paid_out(db: Database, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
    """Staff handed the money back: the manual refund ``reference`` needs nothing more. Idempotent."""
    cmd = parse(MarkRefundPaidOut, command or {}, "pay-out")
    reference = cmd.reference
    with db.transaction() as tx:
        row = store.load_order(tx, order_id, for_update=True)
        ledger = store.load_ledger(tx, row)
        refunded = [e for e in ledger.entries
                    if e.kind is domain.EntryKind.MANUAL_REFUND and e.reference == reference]
        if not refunded:
            raise InvalidRequest(  # not NotFound: the order exists, the request names the wrong refund
                f"Order #{row['number']} has no refund {reference!r} to pay out by hand.",
                order_id=str(row["order_id"]), errors=[{"field": "reference", "reason": "no such manual refund"}],
            )
        if store.record_payout(tx, row["order_id"], reference, actor, cmd.note):
            amount = sum((e.amount for e in refunded), Decimal(0))
            _emit(tx, row, ev.RefundPaidOut(**_base(row, _now()), reference=reference, amount=amount,
                                            currency=row["currency"], note=cmd.note),
                  f"command:mark_refund_paid_out:{reference}")
        return _summary(tx, row)


def _refund_request(cmd: RefundCommand, reference: str | None) -> domain.RefundRequest:
    return domain.RefundRequest(
        lines=dict(cmd.lines),
        shipping=cmd.shipping,
        adjustment_refund=cmd.adjustment_refund,
        adjustment_fee=cmd.adjustment_fee,
        reference=reference,
    )


def _preview_view(row: Mapping[str, Any], p: domain.RefundPreview) -> dict[str, Any]:
    return {
        "order_id": str(row["order_id"]),
        "currency": p.currency,
        "ok": p.ok,
        "lines": [
            {"line_id": ln.line_id, "sku": ln.sku, "quantity": ln.quantity, "amount": str(ln.amount),
             "remaining_quantity": ln.remaining_quantity}
            for ln in p.lines
        ],
        "shipping": str(p.shipping),
        "adjustment_refund": str(p.adjustment_refund),
        "adjustment_fee": str(p.adjustment_fee),
        "total": str(p.total),
        "refundable_before": str(p.refundable_before),
        "status_after": p.status_after.value if p.status_after else None,
        "allocations": [
            {"payment_id": a.payment_id, "amount": str(a.amount), "via_provider": a.via_provider}
            for a in p.allocations
        ],
        "errors": [dict(e) for e in p.errors],
        "already_applied": p.already_applied,
        "reference": p.reference,
        "manual": any(not a.via_provider for a in p.allocations),
    }


def _preview(tx: Tx, row: dict[str, Any], cmd: RefundCommand, reference: str | None) -> domain.RefundPreview:
    porder = store.payment_order(row)
    try:
        return porder.preview_refund(store.load_ledger(tx, row), _refund_request(cmd, reference))
    except domain.MoneyError as exc:
        raise InvalidRequest(f"The refund cannot be computed: {exc}", order_id=str(row["order_id"])) from None


def refund_preview(db: Database, order_id: str, command: Any) -> dict[str, Any]:
    cmd = parse(RefundCommand, command or {}, "refund")
    with db.transaction() as tx:
        row = store.load_order(tx, order_id)
        return _preview_view(row, _preview(tx, row, cmd, cmd.reference))


def refund(
    db: Database,
    provider: PaymentProvider,
    order_id: str,
    command: Any,
    actor: Any,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Refund exactly what the preview shows; the same key (or reference) with the same request refunds once."""
    cmd = parse(RefundCommand, command or {}, "refund")
    reference = cmd.reference or (f"refund:{idempotency_key}" if idempotency_key else f"refund:{uuid.uuid4()}")
    with db.transaction() as tx:
        row = store.load_order(tx, order_id, for_update=True)
        ledger = store.load_ledger(tx, row)
        preview = _preview(tx, row, cmd, reference)
        if preview.already_applied:
            return _preview_view(row, preview)
        if not preview.ok:
            reasons = "; ".join(f"{e['field']}: {e['reason']}" for e in preview.errors)
            raise InvalidRequest(f"The refund cannot be made: {reasons}.", order_id=str(row["order_id"]),
                                 errors=[dict(e) for e in preview.errors])
        oid = row["order_id"]
        for alloc in preview.allocations:
            if alloc.via_provider:
                try:
                    provider.refund(alloc.payment_id, alloc.amount,
                                    idempotency_key=f"{oid}:refund:{reference}:{alloc.payment_id}",
                                    reference=reference)
                except (ProviderUnavailable, ProviderRequestError) as exc:
                    # Nothing is recorded: a retry with the same key replays at the provider, never pays twice.
                    raise ProviderFailed(f"The payment provider did not confirm the refund: {exc}",
                                         order_id=str(oid), reference=reference) from None
        entries = preview.to_entries(reference, _now())
        causation = f"command:refund:{reference}"
        _commit(tx, row, ledger, entries, causation, reason=cmd.reason or "refund",
                extra={"actor": actor, "reason": cmd.reason})
        manual_amount = sum((a.amount for a in preview.allocations if not a.via_provider), Decimal(0))
        _emit(tx, row, ev.RefundCompleted(
            **_base(row, _now()), reference=reference, amount=preview.total, currency=row["currency"],
            lines={ln.line_id: ln.quantity for ln in preview.lines}, shipping=preview.shipping,
            manual=manual_amount > 0, manual_amount=manual_amount,
            allocations=[{"payment_id": a.payment_id, "amount": str(a.amount), "via_provider": a.via_provider}
                         for a in preview.allocations],
            reason=cmd.reason,
        ), causation)
        return _preview_view(row, preview)


# ------------------------------------------------------------------------------------------------ webhooks


def handle_webhook(db: Database, provider: PaymentProvider, body: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """Verify, then apply a provider webhook once: ``processed_webhooks`` is written with the effect."""
    try:
        event = provider.parse_webhook(body.encode(), dict(headers))
    except WebhookVerificationError as exc:
        raise DomainError(f"Webhook rejected: {exc}", reason="signature") from None
    with db.transaction() as tx:
        order_id = _webhook_order(tx, event)
        if order_id is None:
            raise NotFound(f"Webhook {event.webhook_id} ({event.type}) is about no order payments know.",
                           webhook_id=event.webhook_id)
        row = store.load_order(tx, order_id, for_update=True)
        if not store.mark_webhook(tx, event.webhook_id, event.type, row["order_id"]):
            return {"received": True, "duplicate": True, "event_type": event.type}
        try:
            _apply_webhook(tx, provider, row, event)
        except (ProviderUnavailable, ProviderRequestError) as exc:
            # Rolled back, webhook not marked: the provider redelivers it and we try again.
            raise ProviderFailed(f"Webhook {event.webhook_id} needs a provider call that failed: {exc}",
                                 webhook_id=event.webhook_id) from None
        return {"received": True, "duplicate": False, "event_type": event.type}


def _webhook_order(tx: Tx, event: WebhookEvent) -> uuid.UUID | None:
    if event.object_type == "payment":
        ref = event.data.get("reference")
        if ref and store.find_order(tx, ref) is not None:
            return uuid.UUID(str(ref))
        link = event.data.get("link_id")
        p = store.payment_by_link(tx, str(link)) if link else None
        if p is not None:
            return uuid.UUID(str(p["order_id"]))
    if event.payment_id:
        return store.order_of_provider_payment(tx, event.payment_id)
    return None


def _apply_webhook(tx: Tx, provider: PaymentProvider, row: dict[str, Any], event: WebhookEvent) -> None:
    causation = f"webhook:{event.webhook_id}"
    data = event.data
    currency = row["currency"]
    pid = event.payment_id or event.object_id
    link = store.payment_by_link(tx, str(data.get("link_id"))) if data.get("link_id") else None
    ledger = store.load_ledger(tx, row)
    now = event.created_at

    def amount(name: str) -> Decimal:
        return domain.parse_amount(str(data.get(name) or "0"), currency)

    entries: list[domain.LedgerEntry] = []
    if event.type == "payment.requires_action":
        if link is not None:
            store.update_payment(tx, link["id"], status="requires_action", provider_ref=pid)
        _refresh_status(tx, row, ledger, causation, "waiting for 3-D Secure")
        return
    if event.type in ("payment.succeeded", "payment.authorized"):
        authorized, captured = amount("amount_authorized"), amount("amount_captured")
        if authorized > 0:
            entries.append(domain.LedgerEntry(kind=domain.EntryKind.AUTHORIZED, amount=authorized, currency=currency,
                                              payment_id=pid, reference="authorize", at=now,
                                              method=domain.PaymentMethod.CARD))
        if event.type == "payment.succeeded" and captured > 0:
            entries += ledger.capture_entries(pid, captured, now, authorized=authorized)
        if link is not None:
            store.update_payment(tx, link["id"], status="succeeded" if captured > 0 else "authorized",
                                 provider_ref=pid)
        ledger, fresh = _commit(tx, row, ledger, entries, causation,
                                reason="card payment" if captured > 0 else "card authorized")
        if fresh and captured > 0:
            _emit(tx, row, ev.PaymentReceived(**_base(row, _now()), payment_id=pid, method="card", amount=captured,
                                              currency=currency, reference=event.event_id), causation)
        if row["stage"] in NEVER_FULFILLED:
            # Money for an order already cancelled, rejected or abandoned (a customer paying an old link, a late
            # webhook): give it back at once, as the cancel saga did for the money that came before it.
            settle_closed_order(tx, provider, row, row["stage"], causation)
        return
    if event.type == "payment.failed":
        if link is not None:
            store.update_payment(tx, link["id"], status="failed", provider_ref=pid)
        amt = amount("amount")
        entries.append(domain.LedgerEntry(kind=domain.EntryKind.FAILED, amount=amt, currency=currency,
                                          payment_id=pid, reference="failed", at=now,
                                          method=domain.PaymentMethod.CARD))
        _, fresh = _commit(tx, row, ledger, entries, causation, reason="card declined")
        if fresh:
            _emit(tx, row, ev.PaymentFailed(**_base(row, _now()), payment_id=pid, amount=amt, currency=currency,
                                            decline_code=data.get("decline_code")), causation)
        return
    if event.type == "payment.canceled":
        if link is not None:
            store.update_payment(tx, link["id"], status="canceled", provider_ref=pid)
        uncaptured = ledger.uncaptured(pid)  # zero when we voided it ourselves (recorded with the call)
        if uncaptured > 0:
            entries.append(domain.LedgerEntry(kind=domain.EntryKind.VOIDED, amount=uncaptured,
                                              currency=currency, payment_id=pid, reference="void", at=now))
        _commit(tx, row, ledger, entries, causation, reason="authorization voided")
        return
    if event.type == "refund.succeeded" and event.payment_id:
        reference = str(data.get("reference") or event.object_id)
        known = any(
            e.kind in domain.MONEY_OUT and e.payment_id == event.payment_id and e.reference == reference
            for e in ledger.entries
        )
        if known:
            return  # our own refund, recorded when we asked for it
        amt = amount("amount")
        entries.append(domain.LedgerEntry(kind=domain.EntryKind.REFUNDED, amount=amt, currency=currency,
                                          payment_id=event.payment_id, reference=reference, at=now))
        _, fresh = _commit(tx, row, ledger, entries, causation, reason="refunded at the provider")
        if fresh:
            _emit(tx, row, ev.RefundCompleted(
                **_base(row, _now()), reference=reference, amount=amt, currency=currency,
                allocations=[{"payment_id": event.payment_id, "amount": str(amt), "via_provider": True}],
                reason="refunded at the provider",
            ), causation)
        return
    log.info("webhook %s of type %s ignored", event.webhook_id, event.type)


# ---------------------------------------------------------------------------------------------- Nameko


def make_provider() -> HttpSandboxProvider:
    return HttpSandboxProvider(get_settings().sandbox_provider_url, webhook_secret())


class ProviderDependency(DependencyProvider):
    """One provider adapter (an HTTP client with its connection pool) per service process."""

    def setup(self) -> None:
        self.provider: HttpSandboxProvider | None = None

    def start(self) -> None:
        self.provider = make_provider()

    def stop(self) -> None:
        if self.provider is not None:
            self.provider.close()

    def get_dependency(self, worker_ctx: Any) -> PaymentProvider:
        assert self.provider is not None
        return self.provider


class PaymentsService:
    """Payments: ledger, status, manual receipts, card links, refunds, provider webhooks. Publishes
    ``payment.*`` and ``refund.*`` events; reacts to ``order.*``."""

    name = SERVICE
    db: Database = DatabaseProvider(SERVICE)  # type: ignore[assignment]
    relay = OutboxRelayProvider(SERVICE)
    provider: PaymentProvider = ProviderDependency()  # type: ignore[assignment]

    @subscribe("orders", ["order.#"])
    def on_order_event(self, env: Envelope, data: Any) -> None:
        handle_order_event(self.db, self.provider, env)

    @rpc(expected_exceptions=DomainError)
    def summary(self, order_id: str) -> dict[str, Any]:
        return summary(self.db, order_id)

    @rpc(expected_exceptions=DomainError)
    def record_manual_payment(self, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return record_manual_payment(self.db, order_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def create_payment_link(self, order_id: str, actor: Any, command: Any = None) -> dict[str, Any]:
        return create_payment_link(self.db, self.provider, order_id, actor, command)

    @rpc(expected_exceptions=DomainError)
    def capture_payment(self, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return capture_payment(self.db, self.provider, order_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def refund_preview(self, order_id: str, command: Any) -> dict[str, Any]:
        return refund_preview(self.db, order_id, command)

    @rpc(expected_exceptions=DomainError)
    def refund(self, order_id: str, command: Any, actor: Any, idempotency_key: str | None = None) -> dict[str, Any]:
        return refund(self.db, self.provider, order_id, command, actor, idempotency_key)

    @rpc(expected_exceptions=DomainError)
    def manual_refunds(self, pending: bool = True, limit: int = 100) -> dict[str, Any]:
        return manual_refunds(self.db, pending, limit)

    @rpc(expected_exceptions=DomainError)
    def mark_refund_paid_out(self, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
        return mark_refund_paid_out(self.db, order_id, command, actor)

    @rpc(expected_exceptions=DomainError)
    def handle_webhook(self, body: str, headers: dict[str, str]) -> dict[str, Any]:
        return handle_webhook(self.db, self.provider, body, headers)


__all__ = [
    "PaymentsService",
    "ProviderDeclined",
    "apply_order_event",
    "capture_payment",
    "create_payment_link",
    "handle_order_event",
    "handle_webhook",
    "manual_refunds",
    "mark_refund_paid_out",
    "record_manual_payment",
    "refund",
    "refund_preview",
    "settle_closed_order",
    "summary",
]
