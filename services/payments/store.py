"""SQL for the ``payments`` schema: loads an order's payments as one aggregate and saves what changed.

Only this module knows the table layout. ``load`` builds a :class:`~services.payments.domain.OrderPayments`
(the order's payment facts, its ledger, its attempts, its paid-out manual refunds); ``save`` writes what the
use case changed on it: new ledger entries, new or updated attempts, pay-outs, and the order's columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from services.orders.contracts.schemas import Stage
from services.payments.domain import (
    EntryKind,
    Ledger,
    LedgerEntry,
    LineAllocation,
    OrderLine,
    OrderPayments,
    PaymentAttempt,
    PaymentMethod,
    PaymentOrder,
    PaymentStatus,
)
from shared.errors import NotFound
from shared.money import quantize

Tx = psycopg.Connection[Any]


# ------------------------------------------------------------------------------------------------ load


# The order's row with its ledger, attempts and pay-outs in ONE statement (one round trip, not four): each child
# table comes as a JSON array, numbers and times as text so nothing is lost on the way (``_entry``/``_attempt``).
_FIND = (
    "SELECT o.*,"
    " (SELECT coalesce(json_agg(json_build_object("
    "    'kind', e.kind, 'amount', e.amount::text, 'currency', e.currency, 'payment_id', e.payment_id,"
    "    'reference', e.reference, 'at', e.at, 'detail', e.detail) ORDER BY e.id), '[]')"
    "  FROM ledger_entries e WHERE e.order_id = o.order_id) AS entries,"
    " (SELECT coalesce(json_agg(json_build_object("
    "    'id', a.id, 'method', a.method, 'amount', a.amount::text, 'status', a.status,"
    "    'provider_ref', a.provider_ref, 'link_id', a.link_id, 'link_url', a.link_url,"
    "    'capture_method', a.capture_method, 'created_at', a.created_at) ORDER BY a.created_at, a.id), '[]')"
    "  FROM payments a WHERE a.order_id = o.order_id) AS attempts,"
    " (SELECT coalesce(json_agg(m.reference), '[]') FROM manual_payouts m WHERE m.order_id = o.order_id) AS paid_out"
    " FROM payment_orders o WHERE o.order_id = %s"
)


def find(tx: Tx, order_id: UUID | str, *, for_update: bool = False) -> OrderPayments | None:
    """The order's payments, or None if payments never saw it placed. ``for_update`` locks the order.

    One round trip (``_FIND``); two with ``for_update``: the lock is taken by a statement of its own, because
    a statement that waited for a row lock still reads the other tables with the snapshot it started with,
    and would miss the ledger entries and attempts of the transaction it waited for.
    """
    try:
        oid = UUID(str(order_id))
    except ValueError:
        return None
    if for_update and tx.execute(_LOCK, (oid,)).fetchone() is None:
        return None
    row = tx.execute(_FIND, (oid,)).fetchone()
    return None if row is None else _payments(row)


_LOCK = "SELECT 1 FROM payment_orders WHERE order_id = %s FOR UPDATE"


def find_for_webhook(
    tx: Tx, order_id: UUID | str, webhook_id: str, event_type: str
) -> tuple[OrderPayments, bool] | None:
    """Lock the order and record the webhook as processed in one statement, then load the order's payments in
    another (after the lock: see ``find``). The aggregate and whether the webhook is new (False: a duplicate),
    or None if payments know no such order (then nothing is recorded). Recording it in the effect's
    transaction is what makes a duplicate a no-op."""
    try:
        oid = UUID(str(order_id))
    except ValueError:
        return None
    marked = tx.execute(
        "WITH locked AS (" + _LOCK.replace("SELECT 1", "SELECT order_id") + "), "
        "mark AS (INSERT INTO processed_webhooks (webhook_id, event_type, order_id) "
        "  SELECT %s, %s, order_id FROM locked ON CONFLICT DO NOTHING RETURNING 1) "
        "SELECT EXISTS (SELECT 1 FROM locked) AS known, EXISTS (SELECT 1 FROM mark) AS fresh",
        (oid, webhook_id, event_type),
    ).fetchone()
    if marked is None or not marked["known"]:
        return None
    row = tx.execute(_FIND, (oid,)).fetchone()
    return None if row is None else (_payments(row), bool(marked["fresh"]))


def _payments(row: Mapping[str, Any]) -> OrderPayments:
    """The aggregate from a ``_FIND`` row."""
    oid = row["order_id"]
    currency = row["currency"]
    entries = tuple(_entry(_timed(r, "at"), currency) for r in row["entries"])
    attempts = [_attempt(_timed(r, "created_at")) for r in row["attempts"]]
    return OrderPayments(
        order_id=oid,
        number=row["number"],
        test=row["test"],
        order=_payment_order(row),
        payment_method=PaymentMethod(row["payment_method"]) if row["payment_method"] else None,
        stage=Stage(row["stage"]),
        status=PaymentStatus(row["status"]),
        ledger=Ledger(str(oid), currency, entries),
        attempts=attempts,
        paid_at=row["paid_at"],
        on_hold_reason=row["on_hold_reason"],
        paid_out={str(r) for r in row["paid_out"]},
    )


def _timed(row: dict[str, Any], name: str) -> dict[str, Any]:
    """A JSON row with its timestamp (ISO text from Postgres) and amount (text) as Python values again."""
    return {**row, name: datetime.fromisoformat(row[name]), "amount": Decimal(row["amount"])}


def load(tx: Tx, order_id: UUID | str, *, for_update: bool = False) -> OrderPayments:
    found = find(tx, order_id, for_update=for_update)
    if found is None:
        raise NotFound(
            f"Payments know no order {order_id} (yet): give the order id of a placed order.", order_id=str(order_id)
        )
    return found


def _payment_order(row: Mapping[str, Any]) -> PaymentOrder:
    currency = row["currency"]
    lines = tuple(
        OrderLine(
            line_id=str(ln["line_id"]),
            sku=str(ln["sku"]),
            quantity=int(ln["quantity"]),
            unit_price=Decimal(str(ln["unit_price"])),
            name=str(ln.get("name") or ""),
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


def _entry(row: Mapping[str, Any], currency: str) -> LedgerEntry:
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


def _attempt(row: Mapping[str, Any]) -> PaymentAttempt:
    return PaymentAttempt(
        id=row["id"],
        method=PaymentMethod(row["method"]),
        amount=row["amount"],
        status=row["status"],
        provider_ref=row["provider_ref"],
        link_id=row["link_id"],
        link_url=row["link_url"],
        capture_method=row["capture_method"],
        created_at=row["created_at"],
    )


def entry_rows(tx: Tx, order_id: UUID) -> list[dict[str, Any]]:
    """The ledger as stored, with each entry's ``detail`` (actor, reason, breakdown) for the summary view."""
    return list(
        tx.execute("SELECT * FROM ledger_entries WHERE order_id = %s ORDER BY id", (order_id,)).fetchall()
    )


# ------------------------------------------------------------------------------------------------ save


def insert_placed(tx: Tx, payments: OrderPayments) -> bool:
    """Record a newly placed order; False if it already was (the event came again)."""
    order = payments.order
    cur = tx.execute(
        "INSERT INTO payment_orders (order_id, number, currency, total, lines, shipping, discount, tax, "
        "payment_method, test, stage, status, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "%s, now()) ON CONFLICT (order_id) DO NOTHING",
        (
            payments.order_id, payments.number, order.currency, order.amount_due,
            Jsonb([{"line_id": ln.line_id, "sku": ln.sku, "name": ln.name, "quantity": ln.quantity,
                    "unit_price": str(ln.unit_price)} for ln in order.lines]),
            order.shipping, order.discount, order.tax,
            payments.payment_method.value if payments.payment_method else None, payments.test,
            payments.stage.value, payments.status.value,
        ),
    )
    return cur.rowcount == 1


# What ``save`` writes, each part a data-modifying statement over arrays; ``save`` sends only the parts that have
# rows, as ONE statement (one round trip): the first ones as CTEs, the last as the main statement. An empty
# part is left out, not sent empty: a CTE costs Postgres its planning and execution even over empty arrays.
# Ledger rows go in the order recorded (ordinality), as their ids order the ledger. The parts share one
# snapshot, so the UPDATE of attempts never touches one inserted in the same statement (``save`` sends new
# attempts only to the INSERT).
_SAVE_PARTS = {
    "ledger": (
        "INSERT INTO ledger_entries (order_id, kind, amount, currency, payment_id, reference, at, detail)"
        " SELECT %(oid)s, e.kind, e.amount, e.currency, e.payment_id, e.reference, e.at, e.detail::jsonb"
        " FROM unnest(%(e_kind)s::text[], %(e_amount)s::numeric[], %(e_currency)s::text[], %(e_payment)s::text[],"
        "             %(e_reference)s::text[], %(e_at)s::timestamptz[], %(e_detail)s::text[])"
        "   WITH ORDINALITY AS e(kind, amount, currency, payment_id, reference, at, detail, n) ORDER BY e.n"
        " ON CONFLICT (order_id, kind, payment_id, reference) DO NOTHING"
    ),
    "new_attempts": (
        "INSERT INTO payments (id, order_id, method, provider_ref, link_id, link_url, amount, status, capture_method,"
        "                      created_at)"
        " SELECT a.id, %(oid)s, a.method, a.provider_ref, a.link_id, a.link_url, a.amount, a.status, a.capture_method,"
        "        coalesce(a.created_at, now())"
        " FROM unnest(%(a_id)s::text[], %(a_method)s::text[], %(a_ref)s::text[], %(a_link)s::text[], %(a_url)s::text[],"
        "             %(a_amount)s::numeric[], %(a_status)s::text[], %(a_capture)s::text[], %(a_at)s::timestamptz[])"
        "   AS a(id, method, provider_ref, link_id, link_url, amount, status, capture_method, created_at)"
        " ON CONFLICT DO NOTHING"
    ),
    "changed_attempts": (
        "UPDATE payments p SET status = c.status, provider_ref = c.provider_ref, updated_at = now()"
        " FROM unnest(%(c_id)s::text[], %(c_status)s::text[], %(c_ref)s::text[]) AS c(id, status, provider_ref)"
        " WHERE p.id = c.id AND p.order_id = %(oid)s"
    ),
    "payouts": (
        "INSERT INTO manual_payouts (order_id, reference, actor, note)"
        " SELECT %(oid)s, m.reference, m.actor::jsonb, m.note"
        " FROM unnest(%(m_reference)s::text[], %(m_actor)s::text[], %(m_note)s::text[]) AS m(reference, actor, note)"
        " ON CONFLICT DO NOTHING"
    ),
    "order_row": (
        "UPDATE payment_orders SET payment_method = %(method)s, stage = %(stage)s, status = %(status)s,"
        " paid_at = %(paid_at)s, on_hold_reason = %(on_hold_reason)s, updated_at = now() WHERE order_id = %(oid)s"
    ),
}


def _save_statement(parts: list[str]) -> str:
    *ctes, main = [_SAVE_PARTS[name] for name in parts]
    if not ctes:
        return main
    return "WITH " + ", ".join(f"{name} AS ({sql})" for name, sql in zip(parts, ctes, strict=False)) + " " + main


def save(tx: Tx, payments: OrderPayments) -> None:
    """Write what changed on the aggregate since it was loaded (or last saved), then forget the changes.

    One statement (the parts of ``_SAVE_PARTS`` that have rows), none when nothing changed.
    """
    oid = payments.order_id
    new_ids = {a.id for a in payments.new_attempts}
    changed = [a for a in payments.attempts if a.id in payments.changed_attempts and a.id not in new_ids]
    parts: list[str] = []
    params: dict[str, Any] = {"oid": oid}
    if payments.new_entries:
        parts.append("ledger")
        entries = [entry for entry, _ in payments.new_entries]
        params.update(
            e_kind=[e.kind.value for e in entries], e_amount=[e.amount for e in entries],
            e_currency=[e.currency for e in entries], e_payment=[e.payment_id for e in entries],
            e_reference=[e.reference for e in entries], e_at=[e.at for e in entries],
            e_detail=[json.dumps(_detail(e, extra), default=str) for e, extra in payments.new_entries],
        )
    if payments.new_attempts:
        parts.append("new_attempts")
        attempts = payments.new_attempts
        params.update(
            a_id=[a.id for a in attempts], a_method=[a.method.value for a in attempts],
            a_ref=[a.provider_ref for a in attempts], a_link=[a.link_id for a in attempts],
            a_url=[a.link_url for a in attempts], a_amount=[a.amount for a in attempts],
            a_status=[a.status for a in attempts], a_capture=[a.capture_method for a in attempts],
            a_at=[a.created_at for a in attempts],
        )
    if changed:
        parts.append("changed_attempts")
        params.update(c_id=[a.id for a in changed], c_status=[a.status for a in changed],
                      c_ref=[a.provider_ref for a in changed])
    if payments.new_payouts:
        parts.append("payouts")
        params.update(
            m_reference=[reference for reference, _, _ in payments.new_payouts],
            m_actor=[json.dumps(actor) for _, actor, _ in payments.new_payouts],
            m_note=[note for _, _, note in payments.new_payouts],
        )
    if payments.order_changed:
        parts.append("order_row")
        params.update(
            method=payments.payment_method.value if payments.payment_method else None,
            stage=payments.stage.value, status=payments.status.value, paid_at=payments.paid_at,
            on_hold_reason=payments.on_hold_reason,
        )
    if parts:
        tx.execute(_save_statement(parts), params)
    payments.new_entries.clear()
    payments.new_attempts.clear()
    payments.changed_attempts.clear()
    payments.new_payouts.clear()
    payments.order_changed = False


def _detail(entry: LedgerEntry, extra: Mapping[str, Any] | None) -> dict[str, Any]:
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


# ------------------------------------------------------------------------------------------------ webhooks


def order_of_link(tx: Tx, link_id: str) -> UUID | None:
    row = tx.execute("SELECT order_id FROM payments WHERE link_id = %s", (link_id,)).fetchone()
    return None if row is None else UUID(str(row["order_id"]))


def order_of_provider_payment(tx: Tx, provider_payment_id: str) -> UUID | None:
    row = tx.execute(
        "SELECT order_id FROM payments WHERE provider_ref = %s "
        "UNION ALL SELECT order_id FROM ledger_entries WHERE payment_id = %s LIMIT 1",
        (provider_payment_id, provider_payment_id),
    ).fetchone()
    return None if row is None else UUID(str(row["order_id"]))


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


def record_return(tx: Tx, order_id: UUID, return_id: UUID, lines: Mapping[str, int], at: datetime) -> None:
    """Units that came back, per line (``fulfillment.return_recorded``); a return already recorded adds nothing."""
    rows = [(line_id, qty) for line_id, qty in lines.items() if qty > 0]
    if not rows:
        return
    tx.execute(
        "INSERT INTO returned_units (order_id, return_id, line_id, quantity, at)"
        " SELECT %s, %s, r.line_id, r.quantity, %s FROM unnest(%s::text[], %s::integer[]) AS r(line_id, quantity)"
        " ON CONFLICT DO NOTHING",
        (order_id, return_id, at, [r[0] for r in rows], [r[1] for r in rows]),
    )


def returned_units(tx: Tx, order_id: UUID) -> dict[str, int]:
    """Units returned so far, per line id."""
    rows = tx.execute(
        "SELECT line_id, sum(quantity)::integer AS quantity FROM returned_units WHERE order_id = %s GROUP BY line_id",
        (order_id,),
    ).fetchall()
    return {r["line_id"]: int(r["quantity"]) for r in rows}
