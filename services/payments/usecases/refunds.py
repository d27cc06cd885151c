"""Giving money back: the refund preview staff see, the refund itself (exactly what the preview shows), and
the worklist of refunds of money taken by hand that staff must pay out, then mark paid out."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from services.payments import domain, store
from services.payments.contracts import events as ev
from services.payments.contracts.errors import ProviderFailed
from services.payments.contracts.schemas import MarkRefundPaidOut, RefundCommand
from services.payments.provider import PaymentProvider, ProviderRequestError, ProviderUnavailable
from services.payments.usecases import views
from services.payments.usecases.common import base, commit, emit, now
from shared.db import Database
from shared.errors import InvalidRequest, describe, field_error, parse
from shared.money import MoneyError


def _lines(
    p: domain.OrderPayments, cmd: RefundCommand, reference: str | None, returned: dict[str, int]
) -> dict[str, int]:
    """The units to refund per line: as given, or (``from_returns``) every returned unit not refunded yet; a
    refund already made under ``reference`` keeps its own lines, so repeating it replays instead of refusing."""
    if not cmd.from_returns:
        return dict(cmd.lines)
    if cmd.lines:
        raise InvalidRequest(
            "Give the units to refund (lines) or from_returns, not both.", order_id=str(p.order_id),
            errors=[field_error("from_returns", "cannot be combined with lines", "lines_and_from_returns")],
        )
    done = p.ledger.refund_group(reference) if reference else []
    if done:
        return {line_id: alloc.quantity for e in done for line_id, alloc in e.lines.items()}
    return domain.refund_from_returns(p.order, p.ledger, returned)


def _request(
    p: domain.OrderPayments, cmd: RefundCommand, reference: str | None, returned: dict[str, int]
) -> domain.RefundRequest:
    return domain.RefundRequest(
        lines=_lines(p, cmd, reference, returned),
        shipping=cmd.shipping,
        adjustment_refund=cmd.adjustment_refund,
        adjustment_fee=cmd.adjustment_fee,
        reference=reference,
    )


def _preview(
    p: domain.OrderPayments, cmd: RefundCommand, reference: str | None, returned: dict[str, int]
) -> domain.RefundPreview:
    try:
        return p.order.preview_refund(p.ledger, _request(p, cmd, reference, returned))
    except MoneyError as exc:
        raise InvalidRequest(f"The refund cannot be computed: {exc}", order_id=str(p.order_id),
                             errors=[field_error("", str(exc), domain.money_error_code(exc))]) from None


def refund_preview(db: Database, order_id: str, command: Any) -> dict[str, Any]:
    cmd = parse(RefundCommand, command or {}, "refund")
    with db.transaction() as tx:
        p = store.load(tx, order_id)
        returned = store.returned_units(tx, p.order_id)
        preview = _preview(p, cmd, cmd.reference, returned)
        return views.refund_preview(p, preview, views.returns(p, returned)).model_dump(mode="json")


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
        p = store.load(tx, order_id, for_update=True)
        returned = store.returned_units(tx, p.order_id)
        preview = _preview(p, cmd, reference, returned)
        if preview.already_applied:
            return views.refund_preview(p, preview, views.returns(p, returned)).model_dump(mode="json")
        if not preview.ok:
            raise InvalidRequest(f"The refund cannot be made: {describe(preview.errors)}.", order_id=str(p.order_id),
                                 errors=[dict(e) for e in preview.errors])
        oid = p.order_id
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
        causation = f"command:refund:{reference}"
        commit(tx, p, preview.to_entries(reference, now()), causation, reason=cmd.reason or "refund",
               extra={"actor": actor, "reason": cmd.reason})
        manual_amount = sum((a.amount for a in preview.allocations if not a.via_provider), Decimal(0))
        emit(tx, p, ev.RefundCompleted(
            **base(p, now()), reference=reference, amount=preview.total, currency=p.currency,
            lines={ln.line_id: ln.quantity for ln in preview.lines}, shipping=preview.shipping,
            manual=manual_amount > 0, manual_amount=manual_amount,
            allocations=[a.model_dump(mode="json") for a in views.allocations(preview.allocations)],
            reason=cmd.reason,
        ), causation)
        store.save(tx, p)
        return views.refund_preview(p, preview, views.returns(p, returned)).model_dump(mode="json")


def manual_refunds(db: Database, pending: bool = True, limit: int = 100) -> dict[str, Any]:
    """The staff worklist: refunds of money taken by hand, still to pay out (or all of them)."""
    with db.transaction() as tx:
        rows = store.manual_refunds(tx, pending=pending, limit=max(1, min(int(limit), 1000)))
    return views.manual_refunds(rows).model_dump(mode="json")


def mark_refund_paid_out(db: Database, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
    """Staff handed the money back: the manual refund ``reference`` needs nothing more. Idempotent."""
    cmd = parse(MarkRefundPaidOut, command or {}, "pay-out")
    reference = cmd.reference
    with db.transaction() as tx:
        p = store.load(tx, order_id, for_update=True)
        refunded = p.manual_refund(reference)
        if not refunded:
            raise InvalidRequest(  # not NotFound: the order exists, the request names the wrong refund
                f"Order #{p.number} has no refund {reference!r} to pay out by hand.",
                order_id=str(p.order_id),
                errors=[field_error("reference", "no such manual refund", "unknown_refund")],
            )
        if p.mark_paid_out(reference, actor, cmd.note):
            amount = sum((e.amount for e in refunded), Decimal(0))
            emit(tx, p, ev.RefundPaidOut(**base(p, now()), reference=reference, amount=amount,
                                         currency=p.currency, note=cmd.note),
                 f"command:mark_refund_paid_out:{reference}")
        store.save(tx, p)
        return views.summary(tx, p).model_dump(mode="json")
