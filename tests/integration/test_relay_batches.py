"""The relay's batched publishing: frames written many at a time, confirms awaited per window, a refused batch
kept and sent again whole, in order, and a backlog drained in growing batches with every event once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Servers
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

PROBE_TYPE = "bench.relay_probe.v1"  # the type of oms.cli.bench_relay.RelayProbe, which the relay tests emit


def _drain(amqp_url: str, queue: str) -> list[Any]:
    from shared.amqp import connect

    conn = connect(amqp_url)
    try:
        ch = conn.channel()
        out = []
        while (msg := ch.basic_get(queue, no_ack=True)) is not None:
            out.append(msg)
        return out
    finally:
        conn.close()


@pytest.fixture
def scratch_queue(servers: Servers) -> Iterator[tuple[Any, str]]:
    """A queue of this test bound to the probe type on oms.events (re-declarable with other arguments)."""
    from shared.amqp import EVENTS_EXCHANGE, connect

    conn = connect(servers.amqp_url)
    ch = conn.channel()
    ch.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True, auto_delete=False)
    name = f"test.relay.{uuid.uuid4().hex[:8]}"
    try:
        yield ch, name
    finally:
        ch.queue_delete(name)
        conn.close()


def _declare(ch: Any, name: str, **arguments: Any) -> None:
    from shared.amqp import EVENTS_EXCHANGE

    ch.queue_declare(name, durable=True, auto_delete=False, arguments=arguments or None)
    ch.queue_bind(name, EVENTS_EXCHANGE, routing_key=PROBE_TYPE)


def test_a_batch_larger_than_the_window_and_the_write_chunk_arrives_whole_and_in_order(
    servers: Servers, scratch_queue: tuple[Any, str]
) -> None:
    from shared.amqp import EVENTS_EXCHANGE, ConfirmedPublisher, OutgoingMessage

    ch, queue = scratch_queue
    _declare(ch, queue)
    big = b"x" * 300_000  # larger than frame_max (128 KiB): its body goes in several frames
    bodies = [str(n).encode() for n in range(100)] + [big]
    with ConfirmedPublisher(servers.amqp_url, window=7, write_chunk=3) as pub:
        sent = pub.publish(OutgoingMessage(EVENTS_EXCHANGE, PROBE_TYPE, b, {"delivery_mode": 2, "message_id": str(i)},
                                           mandatory=True) for i, b in enumerate(bodies))
        assert sent == len(bodies) and pub.unconfirmed == 0 and pub.returned == []
        assert pub.publish([OutgoingMessage(EVENTS_EXCHANGE, PROBE_TYPE, b"again", {})]) == 1  # same channel
    got = _drain(servers.amqp_url, queue)
    assert [m.body for m in got] == [*bodies, b"again"]
    assert [m.properties["message_id"] for m in got[:3]] == ["0", "1", "2"]


def test_a_nacked_batch_fails_whole(servers: Servers, scratch_queue: tuple[Any, str]) -> None:
    from shared.amqp import EVENTS_EXCHANGE, ConfirmedPublisher, OutgoingMessage, PublishFailed

    ch, queue = scratch_queue
    _declare(ch, queue, **{"x-max-length": 2, "x-overflow": "reject-publish"})  # the broker nacks past 2
    with ConfirmedPublisher(servers.amqp_url, write_chunk=2) as pub, pytest.raises(PublishFailed):
        pub.publish([OutgoingMessage(EVENTS_EXCHANGE, PROBE_TYPE, b"%d" % n, {}) for n in range(5)])


def _emit(database_url: str, schema: str, count: int, subjects: int) -> None:
    import psycopg

    from oms.cli.bench_relay import RelayProbe
    from shared.outbox import Emission, emit_many

    with psycopg.connect(database_url, options=f"-c search_path={schema}") as conn, conn.transaction():
        emit_many(conn, "probe", [
            Emission(RelayProbe(number=n, items=[]), subject=f"s{n % subjects}", correlation_id="c", causation_id="t")
            for n in range(count)
        ])


@pytest.fixture
def scratch_schema(servers: Servers, migrated: dict[str, str]) -> Iterator[str]:
    import psycopg

    from shared.migrate import SHARED_MIGRATIONS, migrate_schema

    schema = f"relay_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    migrate_schema(servers.database_url, schema, [SHARED_MIGRATIONS])
    try:
        yield schema
    finally:
        with psycopg.connect(servers.database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _unpublished(database_url: str, schema: str) -> int:
    import psycopg

    with psycopg.connect(database_url, options=f"-c search_path={schema}") as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()
        return int(row[0]) if row else -1


def _run(relay: Any) -> threading.Thread:
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    return thread


def test_a_refused_batch_stays_unpublished_and_is_sent_again_whole_in_order(
    servers: Servers, scratch_schema: str, scratch_queue: tuple[Any, str]
) -> None:
    import json

    from shared.outbox import Relay

    ch, queue = scratch_queue
    _declare(ch, queue, **{"x-max-length": 3, "x-overflow": "reject-publish"})
    _emit(servers.database_url, scratch_schema, 20, subjects=4)
    relay = Relay(servers.database_url, scratch_schema, servers.amqp_url, batch_size=8, idle_wait=0.1,
                  sleep=lambda s: threading.Event().wait(min(s, 0.1)))
    thread = _run(relay)
    try:
        wait_for(lambda: relay.is_leader, what="the relay to lead")
        threading.Event().wait(1.0)  # several refused attempts
        assert relay.published == 0 and _unpublished(servers.database_url, scratch_schema) == 20
        # The accepting queue is bound before the refusing one goes, so no publish can find no queue at all.
        accepting = f"{queue}.ok"
        _declare(ch, accepting)
        ch.queue_delete(queue)  # the broker accepts again
        wait_for(lambda: relay.published == 20, what="the relay to publish every event")
    finally:
        relay.stop()
        thread.join(5)
    try:
        events = [json.loads(m.body) for m in _drain(servers.amqp_url, accepting)]
    finally:
        ch.queue_delete(accepting)
    assert [e["data"]["number"] for e in events] == list(range(20))  # each once, in id order
    for s in {e["subject"] for e in events}:
        assert [e["sequence"] for e in events if e["subject"] == s] == [1, 2, 3, 4, 5]
    assert _unpublished(servers.database_url, scratch_schema) == 0


def test_a_backlog_is_drained_in_growing_batches_each_event_once_in_order(
    servers: Servers, scratch_schema: str, scratch_queue: tuple[Any, str]
) -> None:
    import json

    from shared.amqp import ConfirmedPublisher
    from shared.outbox import Relay

    ch, queue = scratch_queue
    _declare(ch, queue)
    _emit(servers.database_url, scratch_schema, 3000, subjects=50)
    sizes: list[int] = []

    class Recording(ConfirmedPublisher):
        def send(self, messages: Any) -> int:
            n = super().send(messages)
            sizes.append(n)
            return n

    relay = Relay(servers.database_url, scratch_schema, servers.amqp_url, batch_size=100, max_batch_size=800,
                  idle_wait=0.1, publisher=Recording)
    thread = _run(relay)
    try:
        wait_for(lambda: relay.published == 3000, what="the backlog to drain")
        _emit(servers.database_url, scratch_schema, 5, subjects=5)  # a quiet moment after: a small batch
        wait_for(lambda: relay.published == 3005, what="the late events")
    finally:
        relay.stop()
        thread.join(5)
    assert sizes[:4] == [100, 200, 400, 800] and max(sizes) == 800 and sizes[-1] == 5
    events = [json.loads(m.body) for m in _drain(servers.amqp_url, queue)]
    assert [e["data"]["number"] for e in events] == [*range(3000), *range(5)]
    assert len({e["id"] for e in events}) == 3005


def test_an_event_that_commits_after_later_ids_were_sent_is_still_published(
    servers: Servers, scratch_schema: str, scratch_queue: tuple[Any, str]
) -> None:
    """The relay reads its next batch while the current one awaits confirms. A transaction that took a LOWER
    outbox id but commits after higher ids were sent (another order's, slower) must still go out."""
    import json

    import psycopg

    from oms.cli.bench_relay import RelayProbe
    from shared.outbox import Relay, emit

    ch, queue = scratch_queue
    _declare(ch, queue)
    relay = Relay(servers.database_url, scratch_schema, servers.amqp_url, batch_size=50, idle_wait=0.1)
    thread = _run(relay)
    try:
        with psycopg.connect(servers.database_url, options=f"-c search_path={scratch_schema}") as slow, \
                slow.transaction():
            emit(slow, "probe", RelayProbe(number=-1, items=[]), subject="slow", correlation_id="c",
                 causation_id="t")  # takes the lowest id, not committed yet
            _emit(servers.database_url, scratch_schema, 400, subjects=20)  # higher ids, committed
            wait_for(lambda: relay.published >= 400, what="the later events")
        wait_for(lambda: relay.published == 401, what="the slow transaction's event")
    finally:
        relay.stop()
        thread.join(5)
    numbers = [json.loads(m.body)["data"]["number"] for m in _drain(servers.amqp_url, queue)]
    assert sorted(numbers) == [-1, *range(400)] and len(numbers) == 401  # each once, the late one included
    assert _unpublished(servers.database_url, scratch_schema) == 0


def test_the_relay_fetch_walks_the_unpublished_index_so_published_rows_are_not_read_again(
    servers: Servers, scratch_schema: str
) -> None:
    """Marking a row published leaves its old entry in the partial index until a vacuum (this machine's CI
    Postgres runs with autovacuum off). The relay's fetch must be an index scan in id order, which marks such
    entries dead as it passes them; a bitmap scan (what the planner picks here by default) reads every row
    published since the last vacuum at every fetch: 48 ms per fetch after 5,900 events in the benchmark."""
    import json

    import psycopg

    from shared.outbox import _FETCH, _FETCH_NEXT, _MARK_AND_FETCH, RELAY_SESSION

    url = servers.database_url
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={scratch_schema}") as conn:
        conn.execute("ALTER TABLE outbox SET (autovacuum_enabled = false)")  # the same with or without it
    _emit(url, scratch_schema, 3000, subjects=50)
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={scratch_schema}") as conn:
        conn.execute("UPDATE outbox SET published_at = clock_timestamp()")
    _emit(url, scratch_schema, 5, subjects=5)

    def scans(options: str, query: str, params: dict[str, Any]) -> set[str]:
        with psycopg.connect(url, autocommit=True, options=f"-c search_path={scratch_schema} {options}") as conn:
            row = conn.execute(f"EXPLAIN (FORMAT JSON) {query}", params, prepare=False).fetchone()
        assert row is not None
        plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
        found: set[str] = set()

        def walk(node: dict[str, Any]) -> None:
            found.add(node["Node Type"])
            for child in node.get("Plans", []):
                walk(child)

        walk(plan[0]["Plan"])
        return found

    fetch = {"n": 500}
    fetch_next = {"sent": [1, 2], "n": 500}
    mark_and_fetch = {"done": [1, 2], "n": 500}
    # The statements are prepared, so the plan Postgres keeps (the generic one) must be an index scan too.
    for options in (RELAY_SESSION, f"{RELAY_SESSION} -c plan_cache_mode=force_generic_plan"):
        for query, params in ((_FETCH, fetch), (_FETCH_NEXT, fetch_next), (_MARK_AND_FETCH, mark_and_fetch)):
            found = scans(options, query, params)
            assert "Index Scan" in found and not {"Bitmap Heap Scan", "Seq Scan", "Sort"} & found, (options, found)


def test_events_no_queue_is_bound_for_are_published_and_not_sent_back_to_the_relay(
    servers: Servers, scratch_schema: str
) -> None:
    """An event nobody subscribes to (most message statuses, unless an integrator listens) is confirmed and
    marked published like any other; the broker drops it rather than returning it whole to the relay, which
    had nothing to do with it but parse it and log a count (13 such events per card order, measured)."""
    from shared.amqp import ConfirmedPublisher
    from shared.outbox import Relay

    returned: list[str] = []

    class Recording(ConfirmedPublisher):
        def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
            returned.append(routing_key)
            super()._on_return(exc, exchange, routing_key, message)

    _emit(servers.database_url, scratch_schema, 20, subjects=4)  # no queue is bound to the probe's type
    relay = Relay(servers.database_url, scratch_schema, servers.amqp_url, batch_size=8, idle_wait=0.1,
                  publisher=Recording)
    thread = _run(relay)
    try:
        wait_for(lambda: relay.published == 20, what="the relay to publish every event")
    finally:
        relay.stop()
        thread.join(5)
    assert _unpublished(servers.database_url, scratch_schema) == 0
    assert returned == []
