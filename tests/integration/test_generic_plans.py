"""The statements that run for every consumed batch and every sender round reach their rows by key, whatever
plan Postgres keeps for them.

Postgres keeps a generic plan for a prepared statement once it looks no dearer than the custom ones, and keeps it
until the table is analyzed again. A generic plan made while a table was small (or never analyzed: autovacuum off)
used to join an ``unnest`` of the batch's keys to a scan of EVERY position of the consumer, or of every message
ever sent. Nothing was wrong in the results: each batch just cost more with every order the service had seen. So
these tests force the generic plan on tables of 20,000 rows without statistics, run each statement as the code
sends it (EXPLAIN ANALYZE, rolled back) and count the rows each scan of the table produced.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from shared import inbox
from tests.conftest import Servers

pytestmark = pytest.mark.integration

ROWS = 20_000


@pytest.fixture
def generic(migrated: dict[str, str], servers: Servers) -> Iterator[Any]:
    """A connection factory: search_path = the schema, generic plans forced; everything is rolled back."""
    conns: list[psycopg.Connection[Any]] = []

    def connect(schema: str) -> psycopg.Connection[Any]:
        conn = psycopg.connect(servers.database_url,
                               options=f"-c search_path={schema},public -c plan_cache_mode=force_generic_plan")
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        conn.rollback()
        conn.close()


class Captured:
    """Stands in for a transaction: keeps the statement and parameters the code sends, runs nothing."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def execute(self, query: str, params: Any = None, **_kw: Any) -> None:
        self.sent.append((query, params))


def positional(query: str, params: Any) -> tuple[str, list[Any]]:
    """psycopg's ``%(name)s`` / ``%s`` placeholders as ``$n``, with the values in that order."""
    if isinstance(params, dict):
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)[sb]", query)))
        sql = re.sub(r"%\((\w+)\)[sb]", lambda m: f"${names.index(m.group(1)) + 1}", query)
        return sql, [params[n] for n in names]
    counter = iter(range(1, 1000))
    return re.sub(r"%s", lambda _m: f"${next(counter)}", query), list(params)


class Kept:
    """A statement prepared and run once now, as psycopg sends it, while its table is small: with generic plans
    forced, the plan made now is the one every later run uses, as a service's kept generic plan is."""

    def __init__(self, conn: psycopg.Connection[Any], query: str, params: Any) -> None:
        self.conn = conn
        conn.execute(query, params, prepare=True)
        row = conn.execute("SELECT name FROM pg_prepared_statements WHERE NOT from_sql"
                           " ORDER BY prepare_time DESC LIMIT 1").fetchone()
        assert row is not None
        self.name = row[0]
        _sql, self.values = positional(query, params)
        self.args = ", ".join(["%s"] * len(self.values))

    def explain(self) -> dict[str, Any]:
        """Run it again (EXPLAIN ANALYZE) with the kept plan; the plan's root node."""
        # The values as literals (a client-side cursor): EXECUTE casts them to the statement's parameter types.
        cur = psycopg.ClientCursor(self.conn)
        row = cur.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {self.name}({self.args})", self.values).fetchone()
        assert row is not None
        plan = row[0] if not isinstance(row[0], str) else json.loads(row[0])
        root: dict[str, Any] = plan[0]["Plan"]
        return root


def rows_read(plan: dict[str, Any], table: str) -> list[tuple[str, int]]:
    """(node type, actual rows) of every scan of ``table`` in the plan."""
    found = []
    if plan.get("Relation Name") == table and "Scan" in plan["Node Type"]:
        found.append((plan["Node Type"], int(plan["Actual Rows"]) * int(plan.get("Actual Loops", 1))))
    for child in plan.get("Plans", []):
        found += rows_read(child, table)
    return found


def test_a_batch_moves_its_positions_without_reading_the_consumers_other_positions(generic: Any) -> None:
    conn = generic("orders")
    consumer = f"test.plans.{uuid.uuid4().hex[:8]}"
    moved = [str(uuid.uuid4()), str(uuid.uuid4())]
    conn.execute("INSERT INTO inbox_positions (consumer, source, subject, last_sequence)"
                 " SELECT %s, 'oms.test', s, 1 FROM unnest(%s::text[]) AS s", (consumer, moved))
    kept = Kept(conn, inbox._ADVANCE, {
        "consumer": consumer, "m_sources": ["oms.test"] * 2, "m_subjects": moved, "m_seqs": [2, 2],
        "m_counts": ['{"test.step.v1": 2}'] * 2, "p_sources": [], "p_subjects": [], "p_seqs": [], "p_events": [],
        "d_sources": ["oms.test"], "d_subjects": [moved[0]], "d_seqs": [2],
    })
    conn.execute(
        "INSERT INTO inbox_positions (consumer, source, subject, last_sequence)"
        " SELECT %s, 'oms.test', gen_random_uuid()::text, 1 FROM generate_series(1, %s)", (consumer, ROWS))

    scans = rows_read(kept.explain(), "inbox_positions")
    assert scans, "the statement reads inbox_positions"
    assert sum(n for _, n in scans) <= len(moved), f"read {scans} for {len(moved)} positions"
    assert conn.execute("SELECT count(*) FROM inbox_positions WHERE consumer = %s AND last_sequence = 2",
                        (consumer,)).fetchone() == (len(moved),)


def test_a_sender_round_updates_its_messages_without_reading_every_message(generic: Any) -> None:
    from services.notifications import store

    conn = generic("notifications")
    ours = [uuid.uuid4() for _ in range(3)]
    conn.execute(
        "INSERT INTO messages (id, kind, channel, recipient, language, idempotency_key, context)"
        " SELECT i, 'order_confirmation', 'email', 'b@example.com', 'en', gen_random_uuid(), '{}'"
        " FROM unnest(%s::uuid[]) AS i", (ours,))
    now = datetime.now(UTC)
    rows = [{"id": i, "status": "sent", "attempts": 1, "next_attempt_at": now, "provider_message_id": f"p-{i}",
             "reason": None, "subject": "s", "text": "t", "html": None} for i in ours]
    sent = Captured()
    store.record_round(sent, now, rows)  # type: ignore[arg-type]
    [(query, params)] = sent.sent
    kept = Kept(conn, query, params)
    conn.execute(
        "INSERT INTO messages (id, kind, channel, recipient, language, idempotency_key, context, status)"
        " SELECT gen_random_uuid(), 'order_confirmation', 'email', 'a@example.com', 'en', gen_random_uuid(), '{}',"
        "        'delivered' FROM generate_series(1, %s)", (ROWS,))

    scans = rows_read(kept.explain(), "messages")
    assert scans, "the statement reads messages"
    assert sum(n for _, n in scans) <= len(ours), f"read {scans} for {len(ours)} messages"
    assert conn.execute("SELECT count(*) FROM messages WHERE status = 'sent'").fetchone() == (len(ours),)
