"""Postgres for the notifications schema: the order copies, WhatsApp windows, messages and their history,
template overrides, the settings row and alerts. Plain SQL on the caller's transaction; no decisions here."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from services.notifications import domain

Tx = psycopg.Connection[Any]

MESSAGE_COLUMNS = (
    "id", "event_id", "kind", "channel", "recipient", "language", "order_id", "number", "test", "redirected",
    "status", "idempotency_key", "attempts", "next_attempt_at", "context", "fallback_of", "reason",
)


# ------------------------------------------------------------------------------------------------ order copies
def insert_order(tx: Tx, row: dict[str, Any]) -> dict[str, Any] | None:
    """The order's copy from order.placed, as stored; None when it was there already."""
    written = insert_orders(tx, [row])
    return written[0] if written else None


def insert_orders(tx: Tx, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The copies of these orders (``order.placed``), in one pipelined round trip: those written, as stored (not
    those there already)."""
    if not rows:
        return []
    cur = tx.cursor()
    cur.executemany(
        "INSERT INTO order_copies (order_id, number, test, channel, stage, customer, address, currency, total, items,"
        " placed_at) VALUES (%(order_id)s, %(number)s, %(test)s, %(channel)s, %(stage)s, %(customer)s::jsonb,"
        " %(address)s::jsonb, %(currency)s, %(total)s, %(items)s::jsonb, %(placed_at)s)"
        " ON CONFLICT (order_id) DO NOTHING RETURNING *",
        [{**row, "customer": json.dumps(row["customer"]), "items": json.dumps(row["items"]),
          "address": json.dumps(row["address"]) if row.get("address") is not None else None} for row in rows],
        returning=True,
    )
    written = []
    while True:
        written.extend(cur.fetchall())
        if not cur.nextset():
            return written


_ORDER_FIELDS = {"stage": "%s", "customer": "%s::jsonb", "address": "%s::jsonb", "language": "%s"}


def set_order_fields(tx: Tx, order_id: UUID | str, **fields: Any) -> None:
    sets = ", ".join(f"{name} = {_ORDER_FIELDS[name]}" for name in fields)
    values = [json.dumps(v) if _ORDER_FIELDS[k].endswith("jsonb") and v is not None else v for k, v in fields.items()]
    tx.execute(f"UPDATE order_copies SET {sets}, updated_at = now() WHERE order_id = %s", (*values, order_id))


def get_order(tx: Tx, order_id: UUID | str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = tx.execute("SELECT * FROM order_copies WHERE order_id = %s", (order_id,)).fetchone()
    return row


# ------------------------------------------------------------------------------------------------ settings
def load_preferences(tx: Tx, default_language: str = "en") -> tuple[domain.Preferences, dict[str, Any] | None]:
    """The stored settings over the defaults (every kind present), and the raw row (None: never changed)."""
    row = tx.execute("SELECT * FROM settings WHERE id = 1").fetchone()
    prefs = domain.default_preferences(default_language)
    if row is None:
        return prefs, None
    kinds = dict(prefs.kinds)
    for name, data in (row["kinds"] or {}).items():
        kinds[name] = domain.KindPrefs.from_json(data)
    return domain.Preferences(kinds=kinds, language=row["language"] or prefs.language,
                              store_email=row["store_email"], test_recipient=row["test_recipient"]), row


def save_preferences(tx: Tx, prefs: domain.Preferences, actor: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] | None = tx.execute(
        "INSERT INTO settings (id, kinds, language, store_email, test_recipient, updated_at, updated_by)"
        " VALUES (1, %s::jsonb, %s, %s, %s, now(), %s::jsonb)"
        " ON CONFLICT (id) DO UPDATE SET kinds = EXCLUDED.kinds, language = EXCLUDED.language,"
        " store_email = EXCLUDED.store_email, test_recipient = EXCLUDED.test_recipient, updated_at = now(),"
        " updated_by = EXCLUDED.updated_by RETURNING *",
        (json.dumps({k: v.as_json() for k, v in prefs.kinds.items()}), prefs.language, prefs.store_email,
         prefs.test_recipient, json.dumps(actor)),
    ).fetchone()
    assert row is not None
    return row


# ------------------------------------------------------------------------------------------------ windows
def last_inbound(tx: Tx, phone: str) -> datetime | None:
    row = tx.execute("SELECT last_inbound_at FROM whatsapp_windows WHERE phone = %s", (normal_phone(phone),)).fetchone()
    return row["last_inbound_at"] if row else None


def record_inbound(tx: Tx, phone: str, at: datetime) -> None:
    tx.execute(
        "INSERT INTO whatsapp_windows (phone, last_inbound_at) VALUES (%s, %s) ON CONFLICT (phone) DO UPDATE"
        " SET last_inbound_at = greatest(whatsapp_windows.last_inbound_at, EXCLUDED.last_inbound_at)",
        (normal_phone(phone), at),
    )


def normal_phone(phone: str) -> str:
    """Digits only: "+216 98 765 432" and the provider's "21698765432" are one number."""
    return "".join(ch for ch in phone if ch.isdigit())


# ------------------------------------------------------------------------------------------------ messages
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) VALUES ("
    + ", ".join(f"%({c})s" + ("::jsonb" if c == "context" else "") for c in MESSAGE_COLUMNS)
    + ") ON CONFLICT DO NOTHING"
)


def insert_message(tx: Tx, row: dict[str, Any]) -> dict[str, Any] | None:
    """A new message (queued); None when the (event, kind, channel, recipient) already has one."""
    inserted: dict[str, Any] | None = tx.execute(_INSERT_MESSAGE + " RETURNING *", _message_values(row)).fetchone()
    return inserted


def insert_messages(tx: Tx, rows: Sequence[dict[str, Any]]) -> None:
    """``insert_message`` for many (a consumer batch's new messages), in one pipelined round trip."""
    if rows:
        tx.cursor().executemany(_INSERT_MESSAGE, [_message_values(row) for row in rows])


def _message_values(row: dict[str, Any]) -> dict[str, Any]:
    values = {**{c: row.get(c) for c in MESSAGE_COLUMNS}, "context": json.dumps(row["context"], default=str)}
    values["status"] = values["status"] or "queued"
    values["attempts"] = values["attempts"] or 0
    return values


def get_message(tx: Tx, message_id: UUID | str, *, for_update: bool = False) -> dict[str, Any] | None:
    row: dict[str, Any] | None = tx.execute(
        "SELECT * FROM messages WHERE id = %s" + (" FOR UPDATE" if for_update else ""), (message_id,)).fetchone()
    return row


def find_by_provider_id(tx: Tx, channel: str, provider_message_id: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = tx.execute(
        "SELECT * FROM messages WHERE provider_message_id = %s AND channel = %s FOR UPDATE",
        (provider_message_id, channel)).fetchone()
    return row


def messages_of_event(tx: Tx, event_id: UUID | str | None, kind: str) -> list[dict[str, Any]]:
    if event_id is None:
        return []
    return tx.execute("SELECT * FROM messages WHERE event_id = %s AND kind = %s", (event_id, kind)).fetchall()


def claim_due(tx: Tx, now: datetime, until: datetime, limit: int) -> list[dict[str, Any]]:
    """Claim the due messages (queued or retrying, not claimed or whose claim ran out) until ``until``: rows
    another sender holds are skipped, never waited for."""
    return tx.execute(
        "UPDATE messages m SET claimed_until = %(until)s FROM ("
        "  SELECT id FROM messages WHERE status IN ('queued', 'retrying') AND next_attempt_at <= %(now)s"
        "  AND (claimed_until IS NULL OR claimed_until < %(now)s)"
        "  ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) due"
        " WHERE m.id = due.id RETURNING m.*",
        {"now": now, "until": until, "limit": limit},
    ).fetchall()


def lock_messages(tx: Tx, ids: Sequence[UUID | str]) -> dict[UUID, dict[str, Any]]:
    """These messages as they are now, locked (``FOR UPDATE``, in id order: two lockers never deadlock), by id;
    an id with no row is missing."""
    if not ids:
        return {}
    rows = tx.execute("SELECT * FROM messages WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE",
                      (list(ids),)).fetchall()
    return {r["id"]: r for r in rows}


_ROUND_COLUMNS = ("id", "status", "attempts", "next_attempt_at", "provider_message_id", "reason", "subject", "text",
                  "html")


def record_round(tx: Tx, at: datetime, rows: Sequence[dict[str, Any]]) -> None:
    """A sender round's new values of its messages (every column of ``_ROUND_COLUMNS`` given for each row; the
    claim is released), in one statement. The rows are reached by key (``= ANY``) besides the join: a generic plan
    made while the table was small would otherwise read every message ever sent at each round."""
    if rows:
        tx.execute(
            "UPDATE messages m SET status = v.status, attempts = v.attempts, next_attempt_at = v.next_attempt_at,"
            " claimed_until = NULL, provider_message_id = v.provider_message_id, reason = v.reason,"
            " subject = v.subject, text = v.text, html = v.html, updated_at = %s"
            " FROM unnest(%s::uuid[], %s::text[], %s::int[], %s::timestamptz[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::text[]) AS v(" + ", ".join(_ROUND_COLUMNS) + ")"
            " WHERE m.id = ANY(%s::uuid[]) AND m.id = v.id",
            [at, *([r[c] for r in rows] for c in _ROUND_COLUMNS), [r["id"] for r in rows]],
        )


def release_claims(tx: Tx, ids: Sequence[UUID | str], until: datetime) -> None:
    """Give back claims a sender took (``claim_due`` until ``until``) and did not use: due again at once. A claim
    that ran out and was taken by another sender since is left alone."""
    if ids:
        tx.execute("UPDATE messages SET claimed_until = NULL WHERE id = ANY(%s::uuid[]) AND claimed_until = %s",
                   (list(ids), until))


_MESSAGE_FIELDS = frozenset({"status", "attempts", "next_attempt_at", "claimed_until", "provider_message_id", "reason",
                             "subject", "text", "html", "idempotency_key", "resends", "channel"})


def update_message(tx: Tx, message_id: UUID | str, at: datetime, **fields: Any) -> None:
    unknown = set(fields) - _MESSAGE_FIELDS
    if unknown:
        raise ValueError(f"not message fields: {sorted(unknown)}")
    sets = ", ".join(f"{name} = %s" for name in fields)
    tx.execute(f"UPDATE messages SET {sets}, updated_at = %s WHERE id = %s", (*fields.values(), at, message_id))


def add_history(tx: Tx, message_id: UUID | str, from_status: str | None, status: str, reason: str | None,
                source: str, at: datetime) -> None:
    add_histories(tx, [(message_id, from_status, status, reason, source, at)])


def add_histories(tx: Tx, rows: Sequence[tuple[Any, ...]]) -> None:
    """``add_history`` for many rows (message_id, from_status, status, reason, source, at), one statement."""
    if rows:
        cols = list(zip(*rows, strict=True))
        tx.execute(
            "INSERT INTO message_history (message_id, from_status, status, reason, source, at)"
            " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])",
            [list(c) for c in cols],
        )


def history_of(tx: Tx, ids: Sequence[UUID]) -> dict[UUID, list[dict[str, Any]]]:
    out: dict[UUID, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    for r in tx.execute("SELECT message_id, from_status, status, reason, source, at FROM message_history"
                        " WHERE message_id = ANY(%s) ORDER BY id", (list(ids),)):
        out[r["message_id"]].append({k: r[k] for k in ("from_status", "status", "reason", "source", "at")})
    return out


def list_messages(tx: Tx, *, order_id: UUID | str | None, status: str | None, channel: str | None, limit: int,
                  after: tuple[datetime, UUID] | None) -> list[dict[str, Any]]:
    """Newest first; ``after``: the (created_at, id) of the last row of the previous page."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("order_id", order_id), ("status", status), ("channel", channel)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if after is not None:
        where.append("(created_at, id) < (%s, %s)")
        params.extend(after)
    sql = "SELECT * FROM messages" + (" WHERE " + " AND ".join(where) if where else "")
    return tx.execute(sql + " ORDER BY created_at DESC, id DESC LIMIT %s", (*params, limit)).fetchall()


# ------------------------------------------------------------------------------------------------ templates
def get_template(tx: Tx, kind: str, channel: str, language: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = tx.execute(
        "SELECT * FROM templates WHERE kind = %s AND channel = %s AND language = %s",
        (kind, channel, language)).fetchone()
    return row


def list_template_overrides(tx: Tx) -> list[dict[str, Any]]:
    return tx.execute("SELECT * FROM templates ORDER BY kind, channel, language").fetchall()


def save_template(tx: Tx, t: dict[str, Any], actor: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] | None = tx.execute(
        "INSERT INTO templates (kind, channel, language, subject, text, html, whatsapp_template, whatsapp_params,"
        " updated_at, updated_by) VALUES (%(kind)s, %(channel)s, %(language)s, %(subject)s, %(text)s, %(html)s,"
        " %(whatsapp_template)s, %(whatsapp_params)s::jsonb, now(), %(actor)s::jsonb)"
        " ON CONFLICT (kind, channel, language) DO UPDATE SET subject = EXCLUDED.subject, text = EXCLUDED.text,"
        " html = EXCLUDED.html, whatsapp_template = EXCLUDED.whatsapp_template,"
        " whatsapp_params = EXCLUDED.whatsapp_params, updated_at = now(), updated_by = EXCLUDED.updated_by"
        " RETURNING *",
        {**t, "whatsapp_params": json.dumps(t.get("whatsapp_params") or []), "actor": json.dumps(actor)},
    ).fetchone()
    assert row is not None
    return row


def delete_template(tx: Tx, kind: str, channel: str, language: str) -> None:
    tx.execute("DELETE FROM templates WHERE kind = %s AND channel = %s AND language = %s", (kind, channel, language))


# ------------------------------------------------------------------------------------------------ alerts
