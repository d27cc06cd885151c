"""``outbox.emit_many``: many events in one statement, with exactly ``emit``'s per-subject gapless sequences."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from services.orders.contracts.events import OrderNoteAdded
from shared import outbox
from tests.integration.conftest import note_event

pytestmark = pytest.mark.integration


def test_emit_many_numbers_each_subject_on_from_its_stream_in_the_order_given(probe_db: Any) -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))

    def event(subject: str, text: str) -> OrderNoteAdded:
        return OrderNoteAdded.model_validate(note_event(subject, 1, text).data)

    with probe_db.transaction() as tx:
        outbox.emit(tx, "probe", event(a, "a1"), subject=a, correlation_id=a, causation_id="test")
    given = [(a, "a2"), (b, "b1"), (a, "a3"), (b, "b2"), (a, "a4"), (c, "c1")]
    with probe_db.transaction() as tx:
        emissions = [outbox.Emission(event(s, t), subject=s, correlation_id=s, causation_id="batch") for s, t in given]
        envs = outbox.emit_many(tx, "probe", emissions)
        outbox.emit(tx, "probe", event(a, "a5"), subject=a, correlation_id=a, causation_id="test")
    assert [e.subject for e in envs] == [s for s, _ in given]
    with probe_db.transaction() as tx:
        rows = tx.execute(
            "SELECT event_id, subject, sequence, payload FROM outbox WHERE subject = ANY(%s) ORDER BY id", ([a, b, c],)
        ).fetchall()
        streams = {
            r["subject"]: r["last_sequence"]
            for r in tx.execute(
                "SELECT subject, last_sequence FROM event_streams WHERE subject = ANY(%s)", ([a, b, c],)
            ).fetchall()
        }
        assert outbox.emit_many(tx, "probe", []) == []  # nothing to write: no statement
    payloads = [json.loads(r["payload"]) for r in rows]
    # Outbox ids (the relay's publishing order) follow the order the events were given in.
    assert [p["data"]["text"] for p in payloads] == ["a1", "a2", "b1", "a3", "b2", "a4", "c1", "a5"]
    assert [(r["subject"], r["sequence"]) for r in rows] == [
        (a, 1), (a, 2), (b, 1), (a, 3), (b, 2), (a, 4), (c, 1), (a, 5)
    ]
    assert all(p["sequence"] == r["sequence"] and p["causationid"] for p, r in zip(payloads, rows, strict=True))
    assert [r["event_id"] for r in rows[1:7]] == [e.id for e in envs]
    assert streams == {a: 5, b: 2, c: 1}
    assert all(p["typecounts"] == f"order.note_added.v1:{r['sequence']}" for p, r in zip(payloads, rows, strict=True))


def test_every_event_counts_the_events_of_each_type_of_its_order_so_far(probe_db: Any) -> None:
    """``typecounts`` as ``emit``, ``emit_many`` and a buffered batch stamp it, in the order the events were given."""
    from services.orders.contracts.events import OrderNoteDeleted

    s = str(uuid.uuid4())
    added = OrderNoteAdded.model_validate(note_event(s, 1, "a").data)
    deleted = OrderNoteDeleted.model_validate(note_event(s, 1, "a").data)
    with probe_db.transaction() as tx:
        outbox.emit(tx, "probe", added, subject=s, correlation_id=s, causation_id="t")
        outbox.emit_many(tx, "probe", [outbox.Emission(e, s, s, "t") for e in (deleted, added, deleted)])
        with outbox.buffered(tx):
            outbox.emit(tx, "probe", added, subject=s, correlation_id=s, causation_id="t")
            outbox.emit_many(tx, "probe", [outbox.Emission(deleted, s, s, "t")])
            assert tx.execute("SELECT count(*) AS n FROM outbox WHERE subject = %s", (s,)).fetchone()["n"] == 4
        rows = tx.execute("SELECT sequence, payload FROM outbox WHERE subject = %s ORDER BY id", (s,)).fetchall()
        stream = tx.execute("SELECT type_counts FROM event_streams WHERE subject = %s", (s,)).fetchone()
    a, d = "order.note_added.v1", "order.note_deleted.v1"
    assert [(r["sequence"], json.loads(r["payload"])["typecounts"]) for r in rows] == [
        (1, f"{a}:1"), (2, f"{a}:1,{d}:1"), (3, f"{a}:2,{d}:1"), (4, f"{a}:2,{d}:2"), (5, f"{a}:3,{d}:2"),
        (6, f"{a}:3,{d}:3"),
    ]
    assert stream["type_counts"] == {a: 3, d: 3}
