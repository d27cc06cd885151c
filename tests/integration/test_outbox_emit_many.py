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
