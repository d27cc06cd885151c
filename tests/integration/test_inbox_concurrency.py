"""The inbox under concurrent delivery: several consumers (threads, as several worker processes would be)
receive the events of one new order at the same moment, duplicates included. Each event must take
effect exactly once and in sequence order, whatever the interleaving."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared import inbox
from shared.envelope import Envelope

pytestmark = pytest.mark.integration


def event(subject: str, sequence: int) -> Envelope:
    return Envelope.model_validate({
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "oms/test", "type": "test.step.v1",
        "subject": subject, "time": datetime.now(UTC).isoformat(), "datacontenttype": "application/json",
        "sequence": sequence, "correlationid": subject, "causationid": "test", "data": {"n": sequence},
    })


def deliver_at_once(db: Any, consumer: str, deliveries: list[Envelope]) -> tuple[list[int], list[BaseException]]:
    """Every delivery on its own thread, released together; returns the sequences applied, in order."""
    applied: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(deliveries))

    def apply(tx: Any, env: Envelope) -> None:
        with lock:
            applied.append(env.sequence)

    def deliver(env: Envelope) -> None:
        try:
            start.wait()
            inbox.process(db, consumer, env, apply)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(e,)) for e in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return applied, errors


def test_concurrent_and_duplicate_deliveries_apply_each_event_once_in_order(orders_db: Any) -> None:
    consumer = f"test.concurrency.{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    for _round in range(25):
        subject = str(uuid.uuid4())
        events = [event(subject, n) for n in (1, 2, 3, 4)]
        deliveries = events + [rng.choice(events) for _ in range(3)]  # at-least-once: some twice
        rng.shuffle(deliveries)
        applied, errors = deliver_at_once(orders_db, consumer, deliveries)
        assert not errors, errors
        assert applied == [1, 2, 3, 4], (applied, [e.sequence for e in deliveries])
        with orders_db.transaction() as tx:
            row = tx.execute(
                "SELECT last_sequence FROM inbox_positions WHERE consumer = %s AND subject = %s", (consumer, subject)
            ).fetchone()
            parked = tx.execute("SELECT count(*) AS n FROM inbox_parked WHERE consumer = %s AND subject = %s",
                                (consumer, subject)).fetchone()
        assert row["last_sequence"] == 4 and parked["n"] == 0
