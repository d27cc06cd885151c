"""The cancel/capture saga: how payments react to the order's events.

* ``order.placed``: payments starts knowing the order (unpaid; an order with nothing to pay is announced).
* ``order.payment_method_set``: the method is recorded; ``paid=true`` is money that arrived outside payments.
* ``order.stage_changed``: a cancelled or rejected order gets its money back (authorizations voided, card
  captures refunded, manual refunds listed for staff); at the capture stage, authorized cards are captured.

Money that arrives after the order was closed (an old link, a late 3-D Secure) goes back at once through the
same :func:`settle_closed_order` (called by the webhook handlers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

from services.orders.contracts import events as order_events
from services.orders.contracts.schemas import Stage
from services.payments import domain, store
from services.payments.contracts import events as ev
from services.payments.provider import PaymentProvider
from services.payments.settings import get_settings
from services.payments.usecases import views
from services.payments.usecases.common import Tx, base, commit, emit, now, provider_call, refresh_status
from services.payments.usecases.payments import record_captures
from shared import inbox
from shared.catalog import parse_data
from shared.db import Database
from shared.envelope import Envelope, EventModel
from shared.money import quantize

log = logging.getLogger(__name__)

CONSUMER = "payments.orders"

OrderHandler = Callable[[Tx, PaymentProvider, domain.OrderPayments, Any, str], None]


def handle_order_events(db: Database, provider: PaymentProvider, events: Sequence[Envelope]) -> list[inbox.Outcome]:
    """Apply a batch of order events in one transaction, each once and in per-order order of ``ORDER_EVENT_TYPES``
    (the inbox dedupes, and orders by the counts of those types)."""
    return inbox.process_batch(
        db, CONSUMER, events, lambda tx, e: apply_order_event(tx, provider, e), types=ORDER_EVENT_TYPES
    )


def handle_order_event(db: Database, provider: PaymentProvider, env: Envelope) -> inbox.Outcome:
    """Apply one order event once and in order (a batch of one)."""
    return handle_order_events(db, provider, [env])[0]


def apply_order_event(tx: Tx, provider: PaymentProvider, env: Envelope) -> None:
    data: EventModel = parse_data(env)
    causation = str(env.id)
    if isinstance(data, order_events.OrderPlaced):
        order_placed(tx, data, causation)
        return
    handler = ORDER_EVENT_HANDLERS.get(env.type)
    if handler is None:
        return  # an order event payments has nothing to do with (notes, address, customer)
    p = store.find(tx, env.subject, for_update=True)
    if p is None:
        log.warning("%s for order %s, which payments never saw placed; ignored", env.type, env.subject)
        return
    handler(tx, provider, p, data, causation)
    store.save(tx, p)


def payment_order(data: order_events.OrderPlaced) -> domain.PaymentOrder:
    """The slice of a placed order payments need, from the orders contract's event (lines numbered 1..n)."""
    currency = data.currency
    return domain.PaymentOrder(
        order_id=str(data.order_id),
        currency=currency,
        lines=tuple(
            domain.OrderLine(line_id=str(i + 1), sku=item.sku, quantity=item.quantity, unit_price=item.unit_price,
                             name=item.name)
            for i, item in enumerate(data.items)
        ),
        shipping=quantize(data.totals.shipping, currency),
        discount=quantize(data.totals.discount, currency),
        tax=quantize(data.totals.tax, currency),
        total=quantize(data.totals.total, currency),
    )


def order_payments(data: order_events.OrderPlaced) -> domain.OrderPayments:
    """The order as payments start knowing it, from ``order.placed``."""
    method = domain.PaymentMethod(data.payment_method.value) if data.payment_method else None
    return domain.placed(data.order_id, data.number, data.test, payment_order(data), method, data.stage)


def order_placed(tx: Tx, data: order_events.OrderPlaced, causation: str) -> None:
    p = order_payments(data)
    if not store.insert_placed(tx, p):
        return  # seen already
    # Every order starts ``unpaid`` here and on the orders side, unannounced; only an order with nothing to
    # pay (total 0) starts otherwise, and that is a change to announce.
    refresh_status(tx, p, causation, "nothing to pay")
    store.save(tx, p)


def payment_method_set(
    tx: Tx, provider: PaymentProvider, p: domain.OrderPayments, data: order_events.OrderPaymentMethodSet,
    causation: str,
) -> None:
    method = domain.PaymentMethod(data.method.value)
    p.set_method(method)
    if data.paid:
        _paid_outside(tx, p, method, data, causation)


def _paid_outside(
    tx: Tx, p: domain.OrderPayments, method: domain.PaymentMethod, data: order_events.OrderPaymentMethodSet,
    causation: str,
) -> None:
    """``paid=true`` from the orders API: the money arrived outside payments; record it as a manual receipt."""
    total = p.total
    if total <= 0:
        return
    entry = domain.LedgerEntry(
        kind=domain.EntryKind.MANUAL_RECEIVED, amount=total, currency=p.currency, payment_id="legacy-paid",
        reference="order.payment_method_set", at=data.paid_at or data.at, method=method,
    )
    p.add_attempt(domain.PaymentAttempt(id=f"legacy-paid:{p.order_id}", method=method, amount=total,
                                        status="received", created_at=now()))
    if commit(tx, p, [entry], causation, reason="marked paid on the order"):
        emit(tx, p, ev.PaymentReceived(**base(p, now()), payment_id="legacy-paid", method=method.value,
                                       amount=total, currency=p.currency), causation)


def stage_changed(
    tx: Tx, provider: PaymentProvider, p: domain.OrderPayments, data: order_events.OrderStageChanged,
    causation: str,
) -> None:
    p.set_stage(data.to_stage)
    if data.to_stage in domain.CLOSED_STAGES:
        settle_closed_order(tx, provider, p, data.to_stage, causation)
    elif data.to_stage in capture_stages():
        capture_open_authorizations(tx, provider, p, causation)


ORDER_EVENT_HANDLERS: dict[str, OrderHandler] = {
    order_events.OrderPaymentMethodSet.event_type: payment_method_set,
    order_events.OrderStageChanged.event_type: stage_changed,
}
"""What payments do on each order event of an order they know (``order.placed`` creates it)."""

ORDER_EVENT_TYPES: tuple[str, ...] = tuple(sorted({order_events.OrderPlaced.event_type, *ORDER_EVENT_HANDLERS}))
"""What payments subscribe to: ``order.placed`` and the types of ``ORDER_EVENT_HANDLERS``, nothing else (notes,
address, customer changes never reach payments)."""


def settle_closed_order(
    tx: Tx, provider: PaymentProvider, p: domain.OrderPayments, stage: Stage, causation: str
) -> None:
    """Cancelled or rejected: void open card authorizations, refund card captures through the provider and
    record manual refunds for staff to pay out by hand. Idempotent: keys and references derive from ids."""
    oid = p.order_id
    ledger = p.ledger
    at = now()
    stage_name = stage.value
    entries: list[domain.LedgerEntry] = []
    for pid, uncaptured in ledger.open_authorizations():
        provider_call(partial(provider.void, pid, idempotency_key=f"{oid}:void:{pid}"))
        entries.append(domain.LedgerEntry(
            kind=domain.EntryKind.VOIDED, amount=uncaptured, currency=p.currency, payment_id=pid,
            reference=f"void:{stage_name}", at=at,
        ))
    # One reference per trigger (the order event, or the webhook of money that came late): unique per
    # refund for whoever reads refund.completed.v1, and the same when that trigger is retried.
    reference = f"auto-refund:{stage_name}:{causation}"
    allocations: list[domain.PaymentAllocation] = []
    for pid, amount, is_card in ledger.refundable_by_payment():
        if is_card:
            provider_call(partial(provider.refund, pid, amount, idempotency_key=f"{oid}:refund:{reference}:{pid}",
                                  reference=reference))
        entries.append(domain.LedgerEntry(
            kind=domain.EntryKind.REFUNDED if is_card else domain.EntryKind.MANUAL_REFUND, amount=amount,
            currency=p.currency, payment_id=pid, reference=reference, at=at,
        ))
        allocations.append(domain.PaymentAllocation(pid, amount, is_card))
    if not entries:
        return
    reason = f"order {stage_name}"
    fresh = commit(tx, p, entries, causation, reason=reason, extra={"automatic": True, "reason": reason})
    if not fresh:
        return
    for e in entries:
        if e.kind is domain.EntryKind.VOIDED:
            emit(tx, p, ev.PaymentVoided(**base(p, at), payment_id=e.payment_id, amount=e.amount,
                                         currency=p.currency, reason=reason), causation)
    if allocations:
        manual_amount = sum((a.amount for a in allocations if not a.via_provider), Decimal(0))
        emit(tx, p, ev.RefundCompleted(
            **base(p, at), reference=reference, amount=sum((a.amount for a in allocations), Decimal(0)),
            currency=p.currency, manual=manual_amount > 0, manual_amount=manual_amount,
            allocations=[a.model_dump(mode="json") for a in views.allocations(allocations)], reason=reason,
        ), causation)


def capture_stages() -> frozenset[Stage]:
    """The configured capture stage and every later one (an order may be moved past it quickly)."""
    return domain.capture_stages_from(get_settings().payment_capture_stage)


def capture_open_authorizations(tx: Tx, provider: PaymentProvider, p: domain.OrderPayments, causation: str) -> None:
    """Authorize-then-capture: the order reached the capture stage; take the money authorized at checkout.
    Idempotent: nothing open means nothing to do, and the provider key derives from the payment id."""
    oid = p.order_id
    entries: list[domain.LedgerEntry] = []
    captures: list[tuple[str, Decimal]] = []
    for pid, uncaptured in p.ledger.open_authorizations():
        provider_call(partial(provider.capture, pid, idempotency_key=f"{oid}:capture:{pid}:{uncaptured}"))
        entries += p.ledger.capture_entries(pid, uncaptured, now())
        captures.append((pid, uncaptured))
    record_captures(tx, p, entries, captures, causation, f"captured as the order was {p.stage.value}")
