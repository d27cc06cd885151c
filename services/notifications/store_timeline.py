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
SEQUENCER_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('oms.notifications.alert_positions')) AS taken"
COLUMNS = "id, position, kind, order_id, number, test, title, text, at"


def insert_alert(tx: Tx, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """One alert; None if this event raised this kind already (a redelivery). ``row``: kind, order_id, number,
    test, title, text, at, event_id (None for alerts the service raises itself). Its stream position is given
    when the stream is read (``position_alerts``): writers take no lock."""
    found = tx.execute(
        "INSERT INTO alerts (kind, order_id, number, test, title, text, at, event_id)"
        " VALUES (%(kind)s, %(order_id)s, %(number)s, %(test)s, %(title)s, %(text)s, %(at)s, %(event_id)s)"
        " ON CONFLICT (event_id, kind) DO NOTHING"
        " RETURNING id, kind, order_id, number, test, title, text, at",
        dict(row),
    ).fetchone()
    return dict(found) if found else None


def insert_alerts(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """Many alerts (``insert_alert``'s rows) with two statements: each row's id, or None for a row its event
    raised already. Ids are drawn first, in the rows' order, so each row knows its own."""
    if not rows:
        return []
    ids = [r["id"] for r in tx.execute(
        "SELECT nextval(pg_get_serial_sequence('alerts', 'id')) AS id FROM generate_series(1, %s) ORDER BY 1",
        (len(rows),), prepare=False,
    ).fetchall()]
    inserted = {r["id"] for r in tx.execute(
        "INSERT INTO alerts (id, kind, order_id, number, test, title, text, at, event_id)"
        " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::uuid[], %s::bigint[], %s::boolean[], %s::text[],"
        "                      %s::text[], %s::timestamptz[], %s::uuid[])"
        " ON CONFLICT (event_id, kind) DO NOTHING RETURNING id",
        (ids, [r["kind"] for r in rows], [r["order_id"] for r in rows], [r["number"] for r in rows],
         [bool(r["test"]) for r in rows], [r["title"] for r in rows], [r["text"] for r in rows],
         [r["at"] for r in rows], [r["event_id"] for r in rows]),
    ).fetchall()}
    return [i if i in inserted else None for i in ids]


def position_alerts(tx: Tx, limit: int = 10_000) -> int | None:
    """Give the committed alerts that have no stream position one, in id order; the number given, or None when
    another transaction is doing it right now. Commit at once: the lock is held to the commit.

    Why this is safe for a client that resumes "after position N": positions are drawn only here, under the
    lock, so one transaction at a time draws them and commits before the next draws: every position a reader
    can see is below every position not yet visible. Writers never wait (they drew only the row's id); a
    reader that finds the lock taken reads what is committed and gets the rest at its next poll."""
    taken = tx.execute(SEQUENCER_LOCK).fetchone()
    if not (taken and taken["taken"]):
        return None
    return tx.execute(
        "UPDATE alerts a SET position = p.position FROM ("
        "  SELECT id, nextval('alerts_position_seq') AS position FROM ("
        "    SELECT id FROM alerts WHERE position IS NULL ORDER BY id LIMIT %s) AS due ORDER BY id) AS p"
        " WHERE a.id = p.id",
        (limit,),
    ).rowcount


def alerts_after(tx: Tx, after: int, kinds: Sequence[str] | None, limit: int) -> list[dict[str, Any]]:
    """Alerts with a stream position above ``after`` (the SSE stream's last event id), in position order."""
    if kinds is None:
        rows = tx.execute(
            f"SELECT {COLUMNS} FROM alerts WHERE position > %s ORDER BY position LIMIT %s",
            (after, limit),
        ).fetchall()
    else:
        rows = tx.execute(
            f"SELECT {COLUMNS} FROM alerts WHERE kind = ANY(%s) AND position > %s ORDER BY position LIMIT %s",
            (list(kinds), after, limit),
        ).fetchall()
    return [dict(r) for r in rows]


# ------------------------------------------------------------------------------------------------ timeline
def insert_entry(tx: Tx, row: Mapping[str, Any]) -> bool:
    """One timeline entry per event; False if the event was recorded already."""
    return insert_entries(tx, [row]) == 1


def insert_entries(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> int:
    """A batch's entries with one statement (an event recorded already is skipped); how many were new."""
    if not rows:
        return 0
    cur = tx.execute(
        "INSERT INTO timeline_entries (event_id, order_id, source, kind, sequence, at, summary, actor, data)"
        " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::bigint[], %s::timestamptz[],"
        "                      %s::text[], %s::jsonb[], %s::jsonb[])"
        " ON CONFLICT (event_id) DO NOTHING",
        ([r["event_id"] for r in rows], [r["order_id"] for r in rows], [r["source"] for r in rows],
         [r["kind"] for r in rows], [r["sequence"] for r in rows], [r["at"] for r in rows],
         [r["summary"] for r in rows], [Jsonb(r["actor"]) if r.get("actor") is not None else None for r in rows],
         [Jsonb(r["data"]) for r in rows]),
    )
    return cur.rowcount


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
