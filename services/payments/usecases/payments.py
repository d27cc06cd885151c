"""Taking money: the payment summary, manual payments recorded by staff, card payment links, and staff
capturing authorized card money."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

from services.payments import domain, store
from services.payments.contracts import events as ev
from services.payments.contracts.errors import ProviderFailed
from services.payments.contracts.schemas import CapturePayment, CreatePaymentLink, RecordManualPayment
from services.payments.provider import (
    CaptureMethod,
    PaymentProvider,
    ProviderDeclined,
    ProviderRequestError,
    ProviderUnavailable,
)
from services.payments.settings import get_settings
from services.payments.usecases import views
from services.payments.usecases.common import Tx, base, commit, emit, now, read, refuse_when_closed
from shared.db import Database
from shared.errors import InvalidRequest, NotAllowedInThisState, field_error, parse
from shared.money import MoneyError, parse_amount


def summary(db: Database, order_id: str) -> dict[str, Any]:
    with db.transaction() as tx:
        return views.summary(tx, store.load(tx, order_id)).model_dump(mode="json")


def record_manual_payment(db: Database, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(RecordManualPayment, command, "manual payment")
    with db.transaction() as tx:
        p = store.load(tx, order_id, for_update=True)
        method = domain.PaymentMethod(cmd.method) if cmd.method else p.payment_method
        if method is None or not domain.is_manual(method):
            raise InvalidRequest(
                f"Order #{p.number} is paid by {method.value if method else 'no method yet'}; record a manual "
                "payment with method cash_on_delivery, bank_transfer or pos_on_delivery.",
                order_id=str(p.order_id),
                errors=[field_error("method", "a manual payment method is needed", "manual_method_required")],
            )
        refuse_when_closed(p, "no payment can be recorded on it.")
        amount = _amount(cmd.amount, p.currency)
        if amount <= 0:
            raise InvalidRequest("The amount must be positive.",
                                 errors=[field_error("amount", "must be > 0", "not_positive")])
        reference = cmd.reference or f"manual-{uuid.uuid4().hex[:12]}"
        payment_id = f"manual:{reference}"
        existing = p.ledger.find((domain.EntryKind.MANUAL_RECEIVED, payment_id, reference))
        if existing is not None and existing.amount == amount:
            return views.summary(tx, p, duplicate=True).model_dump(mode="json")
        at = now()
        p.add_attempt(domain.PaymentAttempt(id=payment_id, method=method, amount=amount, status="received",
                                            created_at=at))
        entry = domain.LedgerEntry(
            kind=domain.EntryKind.MANUAL_RECEIVED, amount=amount, currency=p.currency, payment_id=payment_id,
            reference=reference, at=at, method=method,
        )
        causation = f"command:record_manual_payment:{reference}"
        if commit(tx, p, [entry], causation, reason=f"{method.value} received", extra={"actor": actor}):
            emit(tx, p, ev.PaymentReceived(**base(p, now()), payment_id=payment_id, method=method.value,
                                           amount=amount, currency=p.currency, reference=reference), causation)
        store.save(tx, p)
        return views.summary(tx, p).model_dump(mode="json")


def create_payment_link(
    db: Database, provider: PaymentProvider, order_id: str, actor: Any, command: Any = None
) -> dict[str, Any]:
    """A card link for what is still due: an open one for that amount is reused, else the provider makes one.

    The provider's HTTP call is made outside any transaction: decide from a plain read, call the provider
    with an idempotency key derived from that decision (order, link count, amount, capture method), then
    record the link under the order's row lock, deciding again. If the decision still gives the same key,
    the link is recorded (once: its id is the attempt's key); if the order changed in between (another link,
    a payment, a cancellation), the new decision is followed instead. A retry after a failure asks the
    provider with the same key and gets the same link.
    """
    cmd = parse(CreatePaymentLink, command or {}, "payment link")
    capture_method = cmd.capture_method or get_settings().payment_capture
    for _ in range(3):
        with read(db) as conn:
            decision = _link_decision(_placed(conn, order_id), capture_method)
        if isinstance(decision, dict):
            return decision  # an open link for what is due: reused
        p, key, due = decision
        try:
            link = provider.create_payment_link(
                due, p.currency, str(p.order_id), idempotency_key=key, capture_method=CaptureMethod(capture_method)
            )
        except (ProviderUnavailable, ProviderRequestError) as exc:
            raise ProviderFailed(f"The payment provider could not create a link: {exc}",
                                 order_id=str(p.order_id)) from None
        with db.transaction() as tx:
            locked = store.load(tx, order_id, for_update=True)
            now_decided = _link_decision(locked, capture_method)
            if isinstance(now_decided, dict):
                return now_decided  # a concurrent request recorded this very link (or another for what is due)
            if now_decided[1] != key:
                continue  # the order changed while the provider answered: decide again
            attempt = domain.PaymentAttempt(
                id=f"card:{link.id}", method=domain.PaymentMethod.CARD, amount=link.amount, status="open",
                link_id=link.id, link_url=link.url, capture_method=capture_method, created_at=now(),
            )
            locked.add_attempt(attempt)
            emit(tx, locked, ev.PaymentLinkCreated(**base(locked, now()), payment_id=attempt.id, link_id=link.id,
                                                   url=link.url, amount=link.amount, currency=link.currency),
                 f"command:create_payment_link:{link.id}")
            store.save(tx, locked)
            return views.link(locked, attempt).model_dump(mode="json")
    raise ProviderFailed("The order kept changing while the payment link was made; try again.", order_id=order_id)


PLACED_WAITS = (0.03, 0.06)
"""Seconds to wait, one after the other, for an order payments have not seen placed yet, before answering
``NotFound``: about the commit → handled lag of ``order.placed`` under load."""


def _placed(conn: Tx, order_id: str) -> domain.OrderPayments:
    """The order's payments, waiting briefly for an order payments have not seen placed yet.

    A customer asks for the link right after placing the order; under load about one card order in five
    asked before ``order.placed`` reached payments, and the gateway then made two more RPCs (orders: does
    it exist? payments: again). Waiting here a little (a green thread and a cheap read per try) answers
    nearly all of them at once; an order still unknown after that is ``NotFound`` as before, and the
    gateway's catch-up takes over."""
    for wait in PLACED_WAITS:
        found = store.find(conn, order_id)
        if found is not None:
            return found
        time.sleep(wait)  # cooperative: the service process runs under eventlet's monkey-patching
    return store.load(conn, order_id)  # the last try: NotFound, worded as everywhere else


def _link_decision(
    p: domain.OrderPayments, capture_method: str
) -> dict[str, Any] | tuple[domain.OrderPayments, str, Decimal]:
    """The open link to reuse (its view), or what to ask the provider for: ``(payments, idempotency key, due)``.
    Refuses (409) an order that is closed or has nothing left to pay."""
    refuse_when_closed(p, "it cannot be paid any more.")
    s = p.summary()
    if s.balance_due <= 0:
        raise NotAllowedInThisState(
            f"Order #{p.number} has nothing left to pay (status {s.status.value}).",
            order_id=str(p.order_id), payment_status=s.status.value,
        )
    for a in p.attempts:  # an open link for what is still due is reused: asking twice sends one link
        if (a.link_id and a.status in ("open", "failed") and a.amount == s.balance_due
                and a.capture_method == capture_method):
            return views.link(p, a).model_dump(mode="json")
    n = sum(1 for a in p.attempts if a.link_id)
    return p, f"{p.order_id}:link:{n + 1}:{s.balance_due}:{capture_method}", s.balance_due


def capture_payment(db: Database, provider: PaymentProvider, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
    """Staff capture authorized card money now (all of it, or part: the rest of that authorization is
    released). Nothing is recorded unless the provider confirms the capture."""
    cmd = parse(CapturePayment, command or {}, "capture")
    with db.transaction() as tx:
        p = store.load(tx, order_id, for_update=True)
        refuse_when_closed(p, "its authorizations are voided, not captured.")
        open_ = p.ledger.open_authorizations()
        if cmd.payment_id is not None:
            wanted = p.provider_payment_id(cmd.payment_id)
            open_ = [(pid, rest) for pid, rest in open_ if pid == wanted]
        if not open_ and cmd.payment_id is not None:  # the request names the wrong payment: 422
            raise InvalidRequest(
                f"Order #{p.number} has no authorized card payment to capture with id {cmd.payment_id}.",
                order_id=str(p.order_id),
                errors=[field_error("payment_id", "no open authorization with this id", "no_open_authorization")],
            )
        if not open_:  # nothing authorized is left to capture: the order's state, not the request
            raise NotAllowedInThisState(f"Order #{p.number} has no authorized card payment to capture.",
                                        order_id=str(p.order_id))
        if cmd.amount is not None and len(open_) > 1:
            raise InvalidRequest("Several authorizations are open; name the payment_id to capture an amount.",
                                 errors=[field_error("payment_id", "required with amount", "required_with_amount")])
        entries: list[domain.LedgerEntry] = []
        captures: list[tuple[str, Decimal]] = []
        oid = p.order_id
        for pid, rest in open_:
            amount = rest if cmd.amount is None else _amount(cmd.amount, p.currency)
            if not 0 < amount <= rest:
                raise InvalidRequest(
                    f"Capture {amount} {p.currency}: it must be positive and at most the {rest} authorized.",
                    errors=[field_error("amount", f"must be > 0 and <= {rest}",
                                        "not_positive" if amount <= 0 else "exceeds_authorized")],
                )
            try:
                provider.capture(pid, None if amount == rest else amount,
                                 idempotency_key=f"{oid}:capture:{pid}:{amount}")
            except (ProviderUnavailable, ProviderRequestError, ProviderDeclined) as exc:
                raise ProviderFailed(f"The payment provider did not capture {pid}: {exc}",
                                     order_id=str(oid), payment_id=pid) from None
            entries += p.ledger.capture_entries(pid, amount, now())
            captures.append((pid, amount))
        record_captures(tx, p, entries, captures, f"command:capture:{oid}", "captured by staff", actor)
        store.save(tx, p)
        return views.summary(tx, p).model_dump(mode="json")


def record_captures(
    tx: Tx,
    p: domain.OrderPayments,
    entries: list[domain.LedgerEntry],
    captures: list[tuple[str, Decimal]],
    causation: str,
    reason: str,
    actor: Any = None,
) -> None:
    """Record card captures the provider confirmed, and announce the money received."""
    if not entries:
        return
    fresh = commit(tx, p, entries, causation, reason=reason, extra={"actor": actor} if actor else None)
    for pid, amount in captures:
        p.mark_provider_payment(pid, "succeeded")
        if fresh:
            emit(tx, p, ev.PaymentReceived(**base(p, now()), payment_id=pid, method="card", amount=amount,
                                           currency=p.currency, reference="capture"), causation)


def _amount(value: Any, currency: str) -> Decimal:
    try:
        return parse_amount(value, currency)
    except MoneyError as exc:
        raise InvalidRequest(str(exc), errors=[field_error("amount", str(exc), domain.money_error_code(exc))]) from None
