"""Batch subscribers against a real Postgres and RabbitMQ: one transaction per batch, yet every guarantee of
the one-event path: each event applied once and in per-order order, a poison message retried and
dead-lettered alone, nothing acked before its batch commits, several processes on one queue, and a
subscriber of only some types ordered by their counts while the publisher interleaves others."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Servers
from tests.integration.conftest import note_event, peek_queue, publish_events, wait_for
from tests.processes import service_process

pytestmark = pytest.mark.integration

TARGET = "tests.integration.probe_service:BatchProbeService"
QUEUES = ("oms.batchprobe.orders", "oms.batchprobe.notes")


def declare_and_purge(servers: Servers) -> None:
    """The batch probe's queues, declared (it is not a registry service) and emptied of other tests' events."""
    from shared.amqp import Topology, connect, declare_topology
    from shared.consumer import subscriptions_of
    from tests.integration.probe_service import BatchProbeService

    declare_topology(servers.amqp_url, Topology(subscriptions_of(BatchProbeService), retry_delays=(1, 1, 1)))
    conn = connect(servers.amqp_url)
    try:
        ch = conn.channel()
        for queue in QUEUES:
            ch.queue_purge(queue)
        ch.close()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def batchprobe(probe_schema: str, migrated: dict[str, str], logs: Any, servers: Servers) -> Iterator[int]:
    """One batch probe process; yields its metrics port."""
    from tests.e2e.conftest import free_port

    declare_and_purge(servers)
    port = free_port()
    with service_process(TARGET, {**migrated, "OMS_METRICS_PORT": str(port)}, logs):
        yield port
    declare_and_purge(servers)


def counted(subject: str, n: int, text: str, **overrides: Any) -> Any:
    """The n-th ``order.note_added.v1`` of an order whose every event so far was a note: counts = sequence."""
    return note_event(subject, n, text, typecounts=f"order.note_added.v1:{n}", **overrides)


def effects(db: Any, subject: str, consumer: str = "batchprobe.orders") -> list[dict[str, Any]]:
    with db.transaction() as tx:
        return list(tx.execute(
            "SELECT * FROM batch_effects WHERE subject = %s AND consumer = %s ORDER BY n", (subject, consumer)
        ).fetchall())


def tries(db: Any, event_id: uuid.UUID, consumer: str = "batchprobe.orders") -> list[int]:
    """The size of each batch the event was handled in, once per try."""
    with db.transaction() as tx:
        rows = tx.execute(
            "SELECT batch FROM batch_attempts WHERE event_id = %s AND consumer = %s", (event_id, consumer)
        ).fetchall()
    return [r["batch"] for r in rows]


def dead_letter(servers: Servers, message_id: str, queue: str = "oms.batchprobe.orders") -> dict[str, Any] | None:
    return next(
        (m for m in peek_queue(servers.amqp_url, "oms.dead-letters")
         if m["message_id"] == message_id and m["headers"].get("x-oms-queue") == queue),
        None,
    )


def metric(port: int, name: str, **labels: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_a_batch_with_a_duplicate_a_stale_event_an_out_of_order_pair_and_poison_messages(
    batchprobe: int, probe_db: Any, servers: Servers
) -> None:
    a, b, c, d = (str(uuid.uuid4()) for _ in range(4))
    publish_events(servers.amqp_url, [counted(b, 1, "b1"), counted(b, 2, "b2")])
    wait_for(lambda: len(effects(probe_db, b)) == 2, what="b's first events")
    a1, a2 = counted(a, 1, "a1"), counted(a, 2, "a2")
    stale = counted(b, 1, "b1 published again")  # a new id at a position already applied
    poison = counted(c, 1, "fail-always")
    permanent = counted(d, 1, "permanent")
    dead_before = metric(batchprobe, "oms_events_handled_total", queue=QUEUES[0], outcome="dead_lettered")
    publish_events(servers.amqp_url, [a2, poison, a1, a1, stale, permanent])  # a1 twice: at-least-once

    wait_for(lambda: len(effects(probe_db, a)) == 2, what="a's events")
    dead = wait_for(lambda: dead_letter(servers, str(poison.id)), timeout=30, what="the poison's dead letter")
    gone = wait_for(lambda: dead_letter(servers, str(permanent.id)), what="the permanent failure's dead letter")
    assert [e["text"] for e in effects(probe_db, a)] == ["a1", "a2"]  # in order, once
    assert [e["text"] for e in effects(probe_db, b)] == ["b1", "b2"]  # the stale copy had no effect
    assert effects(probe_db, c) == [] and effects(probe_db, d) == []
    # They came as one batch; it failed, and each went again alone: the good ones succeeded on that try.
    assert max(tries(probe_db, a2.id)) >= 5 and sorted(tries(probe_db, a2.id))[0] == 1
    assert len(tries(probe_db, a2.id)) == 2
    # The poison was retried alone with backoff (1, 1, 1 s), then dead-lettered; the permanent one at once.
    assert dead["headers"]["x-oms-attempts"] == 4
    assert "RuntimeError: the handler is broken for this event" in dead["headers"]["x-oms-error"]
    assert len(tries(probe_db, poison.id)) == 5  # the batch, then alone: first try + three retries
    assert gone["headers"]["x-oms-attempts"] == 1 and "PermanentError" in gone["headers"]["x-oms-error"]
    assert metric(batchprobe, "oms_events_handled_total", queue=QUEUES[0], outcome="dead_lettered") - dead_before == 2
    assert metric(batchprobe, "oms_event_batch_size_count", queue=QUEUES[0]) > 0
    assert metric(batchprobe, "oms_event_handle_lag_seconds_count", queue=QUEUES[0]) > 0


def emit_notes(probe_db: Any, subject: str, kinds: list[str]) -> list[Any]:
    """Write the order's events through the real outbox (which stamps sequence and typecounts) and return them as
    they would be published."""
    from services.orders.contracts.events import OrderNoteAdded, OrderNoteDeleted, OrderNoteEdited
    from shared import outbox
    from shared.envelope import Envelope

    base = note_event(subject, 1, "x").data
    models: dict[str, Any] = {
        "added": lambda i: OrderNoteAdded.model_validate({**base, "text": f"added {i}"}),
        "edited": lambda i: OrderNoteEdited.model_validate({**base, "text": f"edited {i}", "previous_text": "x"}),
        "deleted": lambda i: OrderNoteDeleted.model_validate(base),
    }
    with probe_db.transaction() as tx:
        for i, kind in enumerate(kinds):
            if i % 3 == 2:  # some through emit_many, as a set-based job would
                outbox.emit_many(tx, "probe", [outbox.Emission(models[kind](i), subject, subject, "test")])
            else:
                outbox.emit(tx, "probe", models[kind](i), subject=subject, correlation_id=subject, causation_id="test")
        rows = tx.execute(
            "UPDATE outbox SET published_at = now() WHERE subject = %s RETURNING sequence, payload", (subject,)
        ).fetchall()
    return [Envelope.model_validate_json(r["payload"]) for r in sorted(rows, key=lambda r: r["sequence"])]


def deliver_shuffled(servers: Servers, events: list[Any], rng: random.Random, chunks: int = 3) -> None:
    """Every event at least once, some twice, in a random order, in a few publishes (so several batches)."""
    deliveries = events + rng.sample(events, k=max(1, len(events) // 4))
    rng.shuffle(deliveries)
    size = -(-len(deliveries) // chunks)
    for i in range(0, len(deliveries), size):
        publish_events(servers.amqp_url, deliveries[i:i + size])
        time.sleep(0.3)  # longer than the batch wait: the next chunk is another batch


def test_a_subscriber_of_some_types_applies_them_in_order_while_the_publisher_interleaves_others(
    batchprobe: int, probe_db: Any, servers: Servers
) -> None:
    rng = random.Random(10)
    subject = str(uuid.uuid4())
    kinds = [rng.choice(["added", "edited", "deleted"]) for _ in range(18)]
    events = emit_notes(probe_db, subject, kinds)
    assert [e.sequence for e in events] == list(range(1, 19))
    assert events[-1].counts == {f"order.note_{k}.v1": kinds.count(k) for k in set(kinds)}
    wanted = [e for e in events if e.type in ("order.note_added.v1", "order.note_edited.v1")]
    deliver_shuffled(servers, events, rng)

    typed = wait_for(lambda: len(effects(probe_db, subject, "batchprobe.notes")) >= len(wanted)
                     and effects(probe_db, subject, "batchprobe.notes"), what="the typed subscriber's effects")
    every = wait_for(lambda: len(effects(probe_db, subject)) >= len(events) and effects(probe_db, subject),
                     what="the wildcard subscriber's effects")
    time.sleep(0.5)
    assert [e["sequence"] for e in effects(probe_db, subject, "batchprobe.notes")] == [e.sequence for e in wanted]
    assert [e["sequence"] for e in typed] == [e.sequence for e in wanted]
    assert [e["sequence"] for e in every] == list(range(1, 19))
    with probe_db.transaction() as tx:
        parked = tx.execute("SELECT count(*) AS n FROM inbox_parked WHERE subject = %s", (subject,)).fetchone()
    assert parked["n"] == 0


def test_two_processes_on_one_queue_apply_each_event_once_in_per_order_order(
    batchprobe: int, probe_db: Any, servers: Servers, migrated: dict[str, str], logs: Any
) -> None:
    from tests.e2e.conftest import free_port

    rng = random.Random(11)
    port = free_port()
    second_logs = logs / "second"
    second_logs.mkdir(exist_ok=True)
    with service_process(TARGET, {**migrated, "OMS_METRICS_PORT": str(port)}, second_logs):
        before = [metric(p, "oms_events_handled_total", queue=QUEUES[0], outcome="ok") for p in (batchprobe, port)]
        subjects = [str(uuid.uuid4()) for _ in range(30)]
        events = [counted(s, n, f"{s[:8]} {n}") for s in subjects for n in (1, 2, 3, 4)]
        deliver_shuffled(servers, events, rng, chunks=6)
        for s in subjects:
            wait_for(lambda s=s: len(effects(probe_db, s)) >= 4 and len(effects(probe_db, s, "batchprobe.notes")) >= 4,
                     what=f"the events of {s}")
        after = [metric(p, "oms_events_handled_total", queue=QUEUES[0], outcome="ok") for p in (batchprobe, port)]
    time.sleep(0.3)
    for s in subjects:
        assert [e["sequence"] for e in effects(probe_db, s)] == [1, 2, 3, 4]
        assert [e["sequence"] for e in effects(probe_db, s, "batchprobe.notes")] == [1, 2, 3, 4]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)  # both processes took a share


def test_a_batch_whose_commit_fails_is_acked_for_none_and_its_events_apply_once(
    batchprobe: int, probe_db: Any, servers: Servers
) -> None:
    x, y = str(uuid.uuid4()), str(uuid.uuid4())
    ok, trap = counted(x, 1, "fine"), counted(y, 1, "trap-commit")
    publish_events(servers.amqp_url, [ok, trap])
    wait_for(lambda: effects(probe_db, x), what="the good event, applied alone after the batch's commit failed")
    with probe_db.transaction() as tx:
        tx.execute("INSERT INTO switches VALUES ('commit-ok') ON CONFLICT DO NOTHING")
    wait_for(lambda: effects(probe_db, y), timeout=30, what="the trapped event, applied on a retry")
    time.sleep(0.5)
    assert [e["text"] for e in effects(probe_db, x)] == ["fine"]
    assert [e["text"] for e in effects(probe_db, y)] == ["trap-commit"]
    assert sorted(tries(probe_db, ok.id)) == [1, 2]  # the failed batch of two, then alone
    assert len(tries(probe_db, trap.id)) >= 3  # the batch, alone (commit failed again), then a retry
    assert dead_letter(servers, str(trap.id)) is None


def test_while_a_batch_runs_the_events_arriving_meanwhile_wait_and_go_together(
    batchprobe: int, probe_db: Any, servers: Servers
) -> None:
    """One batch at a time per subscriber: events that trickle in during a slow batch are not sent off in many
    small concurrent batches (each racing the others for the same rows) but as one batch once it is done."""
    slow_subject, subject = str(uuid.uuid4()), str(uuid.uuid4())
    slow = counted(slow_subject, 1, "slow")
    publish_events(servers.amqp_url, [slow])
    wait_for(lambda: tries(probe_db, slow.id), what="the slow batch to start")
    trickle = [counted(subject, n, f"trickle {n}") for n in range(1, 31)]
    for i in range(0, 30, 3):  # 10 deliveries over ~1 s, each apart by more than the probe's batch wait
        publish_events(servers.amqp_url, trickle[i:i + 3])
        time.sleep(0.1)
    wait_for(lambda: len(effects(probe_db, subject)) >= 30, what="the trickled events")
    sizes = sorted({tries(probe_db, e.id)[0] for e in trickle})
    assert [e["sequence"] for e in effects(probe_db, subject)] == list(range(1, 31))
    assert len(effects(probe_db, slow_subject)) == 1
    # Published while the slow batch held the subscriber's only slot: they went in one batch when it finished
    # (perhaps a small first one, if a delivery beat the slow batch's dispatch), not ten.
    assert max(sizes) >= 25, sizes
