"""SQL for the ``payments`` schema: the order as payments knows it, its ledger, payment attempts, webhooks.

Only this module knows the table layout. Rows come back as dicts (the pool's ``dict_row``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from services.payments.domain import (
    EntryKind,
    Ledger,
    LedgerEntry,
    LineAllocation,
    OrderLine,
    PaymentOrder,
    quantize,
)
from shared.errors import NotFound

Tx = psycopg.Connection[Any]


# ------------------------------------------------------------------------------------------------ orders


def insert_order(tx: Tx, row: dict[str, Any]) -> bool:
    cur = tx.execute(
        "INSERT INTO payment_orders (order_id, number, currency, total, lines, shipping, discount, tax, "
        "payment_method, test, stage, status, updated_at) VALUES (%(order_id)s, %(number)s, %(currency)s, "
        "%(total)s, %(lines)s, %(shipping)s, %(discount)s, %(tax)s, %(payment_method)s, %(test)s, %(stage)s, "
        "'unpaid', now()) ON CONFLICT (order_id) DO NOTHING",
        {**row, "lines": Jsonb(row["lines"])},
    )
    return cur.rowcount == 1


def find_order(tx: Tx, order_id: UUID | str, *, for_update: bool = False) -> dict[str, Any] | None:
    try:
        oid = UUID(str(order_id))
    except ValueError:
        return None
    row: dict[str, Any] | None = tx.execute(
        f"SELECT * FROM payment_orders WHERE order_id = %s{' FOR UPDATE' if for_update else ''}", (oid,)
    ).fetchone()
    return row


def load_order(tx: Tx, order_id: UUID | str, *, for_update: bool = False) -> dict[str, Any]:
    row = find_order(tx, order_id, for_update=for_update)
    if row is None:
        raise NotFound(
            f"Payments know no order {order_id} (yet): give the order id of a placed order.", order_id=str(order_id)
        )
    return row


def set_method(tx: Tx, order_id: UUID, method: str) -> None:
    tx.execute(
        "UPDATE payment_orders SET payment_method = %s, updated_at = now() WHERE order_id = %s", (method, order_id)
    )


def set_stage(tx: Tx, order_id: UUID, stage: str) -> None:
    tx.execute("UPDATE payment_orders SET stage = %s, updated_at = now() WHERE order_id = %s", (stage, order_id))


def set_status(tx: Tx, order_id: UUID, status: str, paid_at: datetime | None) -> None:
    tx.execute(
        "UPDATE payment_orders SET status = %s, paid_at = %s, updated_at = now() WHERE order_id = %s",
        (status, paid_at, order_id),
    )


def set_hold_reason(tx: Tx, order_id: UUID, reason: str) -> None:
    tx.execute(
        "UPDATE payment_orders SET on_hold_reason = %s, updated_at = now() WHERE order_id = %s", (reason, order_id)
    )


def payment_order(row: dict[str, Any]) -> PaymentOrder:
    currency = row["currency"]
    lines = tuple(
        OrderLine(
            line_id=str(ln["line_id"]),
            sku=str(ln["sku"]),
            quantity=int(ln["quantity"]),
            unit_price=Decimal(str(ln["unit_price"])),
        )
        for ln in row["lines"]
    )
    return PaymentOrder(
        order_id=str(row["order_id"]),
        currency=currency,
        lines=lines,
        shipping=quantize(row["shipping"], currency),
        discount=quantize(row["discount"], currency),
        tax=quantize(row["tax"], currency),
        total=quantize(row["total"], currency),
    )


def order_total(row: Mapping[str, Any]) -> Decimal:
    return quantize(row["total"], row["currency"])


# ------------------------------------------------------------------------------------------------ ledger


def _detail(entry: LedgerEntry, extra: dict[str, Any] | None) -> dict[str, Any]:
    detail: dict[str, Any] = dict(extra or {})
    if entry.lines:
        detail["lines"] = {k: {"quantity": v.quantity, "amount": str(v.amount)} for k, v in entry.lines.items()}
    for name in ("shipping", "adjustment_refund", "adjustment_fee"):
        value = getattr(entry, name)
        if value:
            detail[name] = str(value)
    if entry.method is not None:
        detail["method"] = entry.method.value
    return detail


def _entry(row: dict[str, Any], currency: str) -> LedgerEntry:
    d = row["detail"] or {}
    return LedgerEntry(
        kind=EntryKind(row["kind"]),
        amount=quantize(row["amount"], currency),
        currency=row["currency"],
        payment_id=row["payment_id"],
        reference=row["reference"],
        at=row["at"],
        lines={
            k: LineAllocation(int(v["quantity"]), Decimal(str(v["amount"]))) for k, v in (d.get("lines") or {}).items()
        },
        shipping=Decimal(str(d.get("shipping", "0"))),
        adjustment_refund=Decimal(str(d.get("adjustment_refund", "0"))),
        adjustment_fee=Decimal(str(d.get("adjustment_fee", "0"))),
        method=d.get("method"),
    )


def entry_rows(tx: Tx, order_id: UUID) -> list[dict[str, Any]]:
    return list(
        tx.execute("SELECT * FROM ledger_entries WHERE order_id = %s ORDER BY id", (order_id,)).fetchall()
    )


def load_ledger(tx: Tx, row: dict[str, Any]) -> Ledger:
    currency = row["currency"]
    entries = [_entry(r, currency) for r in entry_rows(tx, row["order_id"])]
    return Ledger(str(row["order_id"]), currency, tuple(entries))


def insert_entries(
    tx: Tx, order_id: UUID, entries: Sequence[LedgerEntry], extra: dict[str, Any] | None = None
) -> None:
    for e in entries:
        tx.execute(
            "INSERT INTO ledger_entries (order_id, kind, amount, currency, payment_id, reference, at, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (order_id, kind, payment_id, reference) DO NOTHING",
            (
                order_id,
                e.kind.value,
                e.amount,
                e.currency,
                e.payment_id,
                e.reference,
                e.at,
                Jsonb(json.loads(json.dumps(_detail(e, extra), default=str))),
            ),
        )


def order_of_provider_payment(tx: Tx, provider_payment_id: str) -> UUID | None:
    row = tx.execute(
        "SELECT order_id FROM payments WHERE provider_ref = %s "
        "UNION ALL SELECT order_id FROM ledger_entries WHERE payment_id = %s LIMIT 1",
        (provider_payment_id, provider_payment_id),
    ).fetchone()
    return None if row is None else UUID(str(row["order_id"]))


# ------------------------------------------------------------------------------------------------ payments


def insert_payment(
    tx: Tx,
    *,
    payment_id: str,
    order_id: UUID,
    method: str,
    amount: Decimal,
    status: str,
    provider_ref: str | None = None,
    link_id: str | None = None,
    link_url: str | None = None,
    capture_method: str = "automatic",
) -> bool:
    cur = tx.execute(
        "INSERT INTO payments (id, order_id, method, provider_ref, link_id, link_url, amount, status, capture_method) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (payment_id, order_id, method, provider_ref, link_id, link_url, amount, status, capture_method),
    )
    return cur.rowcount == 1


def payments_of(tx: Tx, order_id: UUID) -> list[dict[str, Any]]:
    return list(tx.execute("SELECT * FROM payments WHERE order_id = %s ORDER BY created_at, id", (order_id,)))


def payment_by_link(tx: Tx, link_id: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = tx.execute("SELECT * FROM payments WHERE link_id = %s", (link_id,)).fetchone()
    return row


def update_payment(tx: Tx, payment_id: str, *, status: str, provider_ref: str | None = None) -> None:
    tx.execute(
        "UPDATE payments SET status = %s, provider_ref = coalesce(%s, provider_ref), updated_at = now() "
        "WHERE id = %s",
        (status, provider_ref, payment_id),
    )


def any_in_progress(tx: Tx, order_id: UUID) -> bool:
    """A card payment waiting for the customer at the provider (3-D Secure) counts as ``in_progress``."""
    row = tx.execute(
        "SELECT EXISTS (SELECT 1 FROM payments WHERE order_id = %s AND status = 'requires_action') AS busy",
        (order_id,),
    ).fetchone()
    return bool(row and row["busy"])


# ------------------------------------------------------------------------------------------------ webhooks


def mark_webhook(tx: Tx, webhook_id: str, event_type: str, order_id: UUID | None) -> bool:
    """Record a webhook as processed in the effect's transaction; False if it already was (duplicate)."""
    cur = tx.execute(
        "INSERT INTO processed_webhooks (webhook_id, event_type, order_id) VALUES (%s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        (webhook_id, event_type, order_id),
    )
    return cur.rowcount == 1


def set_provider_payment_status(tx: Tx, order_id: UUID, provider_ref: str, status: str) -> None:
    tx.execute(
        "UPDATE payments SET status = %s, updated_at = now() WHERE order_id = %s AND provider_ref = %s",
        (status, order_id, provider_ref),
    )


def provider_payment_id(tx: Tx, order_id: UUID, given: str) -> str:
    """The provider's payment id (what the ledger uses) for ours (``card:<link>``) or for itself."""
    row = tx.execute(
        "SELECT provider_ref FROM payments WHERE order_id = %s AND id = %s AND provider_ref IS NOT NULL",
        (order_id, given),
    ).fetchone()
    return str(row["provider_ref"]) if row else given


# ------------------------------------------------------------------------------------------------ manual pay-outs


def manual_refunds(tx: Tx, *, pending: bool, limit: int) -> list[dict[str, Any]]:
    """Refunds staff must pay out by hand, one row per (order, refund reference), oldest first."""
    return list(
        tx.execute(
            "SELECT e.order_id, o.number, o.test, e.reference, sum(e.amount) AS amount, e.currency, "
            "       min(e.at) AS at, string_agg(DISTINCT coalesce(p.method, o.payment_method), ', ') AS methods, "
            "       m.paid_out_at, m.actor AS paid_out_by, m.note "
            "FROM ledger_entries e JOIN payment_orders o ON o.order_id = e.order_id "
            "LEFT JOIN payments p ON p.id = e.payment_id "
            "LEFT JOIN manual_payouts m ON m.order_id = e.order_id AND m.reference = e.reference "
            "WHERE e.kind = 'manual_refund' AND (NOT %s OR m.order_id IS NULL) "
            "GROUP BY e.order_id, o.number, o.test, e.reference, e.currency, m.paid_out_at, m.actor, m.note "
            "ORDER BY min(e.at), e.order_id, e.reference LIMIT %s",
            (pending, limit),
        ).fetchall()
    )


def paid_out_references(tx: Tx, order_id: UUID) -> set[str]:
    rows = tx.execute("SELECT reference FROM manual_payouts WHERE order_id = %s", (order_id,)).fetchall()
    return {str(r["reference"]) for r in rows}


def record_payout(tx: Tx, order_id: UUID, reference: str, actor: Any, note: str | None) -> bool:
    cur = tx.execute(
        "INSERT INTO manual_payouts (order_id, reference, actor, note) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        (order_id, reference, Jsonb(actor), note),
    )
    return cur.rowcount == 1
