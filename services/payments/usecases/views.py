"""Answers of the use cases, built by their contract models (``services.payments.contracts.schemas``).

A use case returns ``view.model_dump(mode="json")``: the shape is the published one, money is printed in the
currency's minor unit by ``MoneyValue``/``quantize``, and nothing is assembled by hand.
"""

from __future__ import annotations

from typing import Any

import psycopg

from services.payments import domain, store
from services.payments.contracts.schemas import (
    AllocationView,
    LedgerEntryView,
    ManualRefundList,
    ManualRefundView,
    PaymentLinkView,
    PaymentSummary,
    PaymentView,
    RefundLineView,
    RefundPreviewView,
    ReturnedLineView,
)
from shared.money import quantize

Tx = psycopg.Connection[Any]


def summary(tx: Tx, p: domain.OrderPayments, *, duplicate: bool = False) -> PaymentSummary:
    """The payment side of the order as saved: call after ``store.save``."""
    s = p.summary()
    currency = p.currency
    return PaymentSummary(
        order_id=p.order_id,
        number=p.number,
        currency=currency,
        total=p.total,
        payment_method=p.payment_method,
        stage=p.stage,
        status=p.status,
        paid_at=p.paid_at,
        on_hold_reason=p.on_hold_reason,
        authorized=quantize(s.authorized, currency),
        captured=quantize(s.captured, currency),
        refunded=quantize(s.refunded, currency),
        pending=quantize(s.pending, currency),
        net_paid=quantize(s.net_paid, currency),
        balance_due=quantize(s.balance_due, currency),
        overpaid=quantize(s.overpaid, currency),
        payments=[
            PaymentView(
                id=a.id, method=a.method, status=a.status, amount=quantize(a.amount, currency),
                provider_ref=a.provider_ref, link_id=a.link_id, link_url=a.link_url, created_at=a.created_at,
            )
            for a in p.attempts
        ],
        ledger=[
            LedgerEntryView(
                kind=e["kind"], amount=quantize(e["amount"], currency), currency=e["currency"],
                payment_id=e["payment_id"], reference=e["reference"], at=e["at"],
                manual_action_required=e["kind"] == domain.EntryKind.MANUAL_REFUND.value
                and e["reference"] not in p.paid_out,
                detail=e["detail"],
            )
            for e in store.entry_rows(tx, p.order_id)
        ],
        returns=returns(p, store.returned_units(tx, p.order_id)),
        duplicate=duplicate,
    )


def link(p: domain.OrderPayments, attempt: domain.PaymentAttempt) -> PaymentLinkView:
    assert attempt.link_id is not None and attempt.link_url is not None
    return PaymentLinkView(
        order_id=p.order_id, payment_id=attempt.id, link_id=attempt.link_id, url=attempt.link_url,
        amount=quantize(attempt.amount, p.currency), currency=p.currency, status=attempt.status,
        capture_method=attempt.capture_method,
    )


def returns(p: domain.OrderPayments, returned: dict[str, int]) -> list[ReturnedLineView]:
    """Per line with units returned: ordered, returned, refunded, returned and not refunded yet."""
    return [
        ReturnedLineView(line_id=r.line_id, sku=r.sku, ordered=r.ordered, returned=r.returned, refunded=r.refunded,
                         returned_not_refunded=r.returned_not_refunded)
        for r in domain.returned_lines(p.order, p.ledger, returned)
    ]


def refund_preview(
    p: domain.OrderPayments, preview: domain.RefundPreview, returned: list[ReturnedLineView] | None = None
) -> RefundPreviewView:
    return RefundPreviewView(
        order_id=p.order_id,
        currency=preview.currency,
        ok=preview.ok,
        lines=[
            RefundLineView(line_id=ln.line_id, sku=ln.sku, quantity=ln.quantity, amount=ln.amount,
                           remaining_quantity=ln.remaining_quantity)
            for ln in preview.lines
        ],
        shipping=preview.shipping,
        adjustment_refund=preview.adjustment_refund,
        adjustment_fee=preview.adjustment_fee,
        total=preview.total,
        refundable_before=preview.refundable_before,
        status_after=preview.status_after,
        allocations=allocations(preview.allocations),
        errors=[dict(e) for e in preview.errors],
        already_applied=preview.already_applied,
        reference=preview.reference,
        manual=any(not a.via_provider for a in preview.allocations),
        returns=returned or [],
    )


def allocations(allocs: Any) -> list[AllocationView]:
    return [AllocationView(payment_id=a.payment_id, amount=a.amount, via_provider=a.via_provider) for a in allocs]


def manual_refunds(rows: list[dict[str, Any]]) -> ManualRefundList:
    return ManualRefundList(items=[
        ManualRefundView.model_validate({**r, "amount": quantize(r["amount"], r["currency"])}) for r in rows
    ])
