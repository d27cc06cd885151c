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
from shared.envelope import Envelope, format_typecounts

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


def typed_stream(subject: str, kinds: list[str], uncounted: int = 0) -> list[Envelope]:
    """The events of one order as a publisher stamps them: ``sequence`` and the counts of each type so far. The
    first ``uncounted`` ones were published before the counts existed (no ``typecounts``)."""
    counts: dict[str, int] = {}
    out = []
    for n, kind in enumerate(kinds, start=1):
        env = event(subject, n).model_copy(update={"type": kind})
        if n > uncounted:
            counts[kind] = counts.get(kind, 0) + 1
            env = env.model_copy(update={"typecounts": format_typecounts(counts)})
        out.append(env)
    return out


def deliver_batches_at_once(
    db: Any, consumer: str, batches: list[list[Envelope]], types: tuple[str, ...] | None
) -> tuple[dict[str, list[int]], list[BaseException]]:
    """Each batch on its own thread (as several processes would), released together; returns per subject the
    sequences applied, in order."""
    applied: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(batches))

    def apply(tx: Any, env: Envelope) -> None:
        with lock:
            applied.setdefault(env.subject, []).append(env.sequence)

    def deliver(batch: list[Envelope]) -> None:
        try:
            start.wait()
            inbox.process_batch(db, consumer, batch, apply, types=types)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return applied, errors


def test_concurrent_batches_over_the_same_orders_apply_each_typed_event_once_in_order(orders_db: Any) -> None:
    """Batches that share orders lock their positions in one order (no deadlock) and, together, apply exactly the
    types asked for, each once, in the publisher's order, though other types interleave and never arrive."""
    consumer = f"test.batches.{uuid.uuid4().hex[:8]}"
    wanted = ("test.a.v1", "test.b.v1")
    rng = random.Random(8)
    for _round in range(10):
        streams = {}
        for _ in range(6):
            subject = str(uuid.uuid4())
            streams[subject] = typed_stream(subject, [rng.choice([*wanted, "test.other.v1"]) for _ in range(8)])
        deliveries = [e for s in streams.values() for e in s if e.type in wanted]
        deliveries += rng.sample(deliveries, k=len(deliveries) // 3)  # at-least-once
        rng.shuffle(deliveries)
        batches = [deliveries[i::4] for i in range(4)]
        applied, errors = deliver_batches_at_once(orders_db, consumer, batches, wanted)
        assert not errors, errors
        for subject, stream in streams.items():
            assert applied.get(subject, []) == [e.sequence for e in stream if e.type in wanted]
        with orders_db.transaction() as tx:
            parked = tx.execute("SELECT count(*) AS n FROM inbox_parked WHERE consumer = %s", (consumer,)).fetchone()
        assert parked["n"] == 0


def test_a_typed_consumer_finishes_the_uncounted_events_first_and_can_take_a_new_type_later(orders_db: Any) -> None:
    """Across the upgrade that introduced ``typecounts``: events published before it are ordered by ``sequence``
    and come first. Later, adding a type to the set starts it from the stored counts, without a new name."""
    consumer = f"test.upgrade.{uuid.uuid4().hex[:8]}"
    subject = str(uuid.uuid4())
    kinds = ["test.a.v1", "test.other.v1", "test.a.v1", "test.b.v1", "test.other.v1", "test.a.v1", "test.b.v1",
             "test.other.v1", "test.a.v1"]
    stream = typed_stream(subject, kinds, uncounted=3)
    seen: list[int] = []

    def apply(tx: Any, env: Envelope) -> None:
        seen.append(env.sequence)

    # The old wildcard binding delivered every uncounted event; the first counted one arrives before them.
    s = stream
    assert inbox.process_batch(orders_db, consumer, [s[3], s[1]], apply, types=("test.a.v1",)) == [
        inbox.Outcome.ignored, inbox.Outcome.parked]
    assert inbox.process_batch(orders_db, consumer, [s[5], s[2], s[0]], apply, types=("test.a.v1",)) == [
        inbox.Outcome.applied, inbox.Outcome.applied, inbox.Outcome.applied]
    assert seen == [1, 2, 3, 6]
    # A deploy adds test.b.v1 to the set: its events after the last applied one are next; none is replayed.
    both = ("test.a.v1", "test.b.v1")
    out = inbox.process_batch(orders_db, consumer, [s[8], s[6], s[3]], apply, types=both)
    assert out == [inbox.Outcome.applied, inbox.Outcome.applied, inbox.Outcome.stale]
    assert seen == [1, 2, 3, 6, 7, 9]
