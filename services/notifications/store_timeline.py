"""SQL of staff alerts and the order timeline (tables ``alerts`` and ``timeline_entries`` of schema
``notifications``). Only this module knows their layout; the use cases call it inside their transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

Tx = psycopg.Connection[Any]


# ------------------------------------------------------------------------------------------------ alerts
def insert_alert(tx: Tx, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """One alert; None if this event raised this kind already (a redelivery). ``row``: kind, order_id, number,
    test, title, text, at, event_id (None for alerts the service raises itself).

    Alert ids are the live stream's event ids, and a client resumes "after id N": so ids must become visible
    in id order. A sequence alone does not give that (a transaction that took id 41 may commit after one that
    took 42, and a client that saw 42 would never see 41). The transaction-scoped lock taken before the id
    is drawn makes alert-writing transactions take ids and commit one after the other."""
    return insert_alerts(tx, [row])[0]


_ALERTS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('oms.notifications.alerts'))"
_INSERT_ALERT = (
    "INSERT INTO alerts (kind, order_id, number, test, title, text, at, event_id)"
    " VALUES (%(kind)s, %(order_id)s, %(number)s, %(test)s, %(title)s, %(text)s, %(at)s, %(event_id)s)"
    " ON CONFLICT (event_id, kind) DO NOTHING"
    " RETURNING id, kind, order_id, number, test, title, text, at"
)


def insert_alerts(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | None]:
    """``insert_alert`` for many, in the order given (ids ascending in that order): the lock and one statement
    per alert, pipelined in one round trip. Each is the stored alert, or None (raised already)."""
    if not rows:
        return []
    out: list[dict[str, Any] | None] = []
    with tx.pipeline(), tx.cursor() as cur:
        tx.execute(_ALERTS_LOCK)
        cur.executemany(_INSERT_ALERT, [dict(r) for r in rows], returning=True)
        while True:
            found = cur.fetchone()
            out.append(dict(found) if found is not None else None)
            if not cur.nextset():
                break
    return out


def alerts_after(tx: Tx, after_id: int, kinds: Sequence[str] | None, limit: int) -> list[dict[str, Any]]:
    """Alerts with an id above ``after_id`` (the SSE stream's last event id), in id order."""
    if kinds is None:
        rows = tx.execute(
            "SELECT id, kind, order_id, number, test, title, text, at FROM alerts WHERE id > %s ORDER BY id LIMIT %s",
            (after_id, limit),
        ).fetchall()
    else:
        rows = tx.execute(
            "SELECT id, kind, order_id, number, test, title, text, at FROM alerts"
            " WHERE kind = ANY(%s) AND id > %s ORDER BY id LIMIT %s",
            (list(kinds), after_id, limit),
        ).fetchall()
    return [dict(r) for r in rows]


# ------------------------------------------------------------------------------------------------ timeline
def insert_entry(tx: Tx, row: Mapping[str, Any]) -> bool:
    """One timeline entry per event; False if the event was recorded already."""
    cur = tx.execute(_INSERT_ENTRY, _entry_values(row))
    return cur.rowcount == 1


_INSERT_ENTRY = (
    "INSERT INTO timeline_entries (event_id, order_id, source, kind, sequence, at, summary, actor, data)"
    " VALUES (%(event_id)s, %(order_id)s, %(source)s, %(kind)s, %(sequence)s, %(at)s, %(summary)s, %(actor)s,"
    " %(data)s) ON CONFLICT (event_id) DO NOTHING"
)


def _entry_values(row: Mapping[str, Any]) -> dict[str, Any]:
    return {**row, "actor": Jsonb(row["actor"]) if row.get("actor") is not None else None, "data": Jsonb(row["data"])}


def insert_entries(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> None:
    """``insert_entry`` for many, one pipelined round trip."""
    if rows:
        with tx.cursor() as cur:
            cur.executemany(_INSERT_ENTRY, [_entry_values(r) for r in rows])


def entries(tx: Tx, order_id: UUID) -> list[dict[str, Any]]:
    """The order's entries in time order; entries of the same instant in their source's per-order order."""
    rows = tx.execute(
        "SELECT source, kind, sequence, at, summary, actor, data FROM timeline_entries WHERE order_id = %s"
        " ORDER BY at, sequence, id",
        (order_id,),
    ).fetchall()
    return [dict(r) for r in rows]


def message_history(tx: Tx, order_id: UUID) -> list[dict[str, Any]]:
    """Every status every message of the order took (N-core's ``messages`` and ``message_history``), in time
    order."""
    rows = tx.execute(
        "SELECT m.id AS message_id, m.kind, m.channel, m.recipient, m.redirected, h.from_status, h.status, h.reason,"
        " h.source, h.at FROM messages m JOIN message_history h ON h.message_id = m.id WHERE m.order_id = %s"
        " ORDER BY h.at, h.id",
        (order_id,),
    ).fetchall()
    return [dict(r) for r in rows]
