"""``oms bench``'s drain reads what is left to do from the broker and the database themselves: queue depths by a
passive declare (which creates nothing, so a remote broker without the management API works), unpublished
outbox rows, and the topology ``oms migrate`` declares for the queue names."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Servers

pytestmark = pytest.mark.integration


def test_the_drain_sees_queued_messages_and_unpublished_events_and_skips_a_missing_queue(
    migrated: dict[str, str], servers: Servers
) -> None:
    import amqp
    import psycopg

    from oms.cli import bench_probe
    from shared.amqp import connect

    queue, missing, schema = f"bench.drain.{uuid.uuid4().hex[:8]}", f"bench.none.{uuid.uuid4().hex[:8]}", "bench_drain"
    conn = connect(servers.amqp_url)
    ch = conn.channel()
    ch.queue_declare(queue, durable=False, auto_delete=False)
    for _ in range(3):
        ch.basic_publish(amqp.Message(b"x"), exchange="", routing_key=queue)
    with psycopg.connect(servers.database_url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        db.execute(f"CREATE TABLE IF NOT EXISTS {schema}.outbox (id int, published_at timestamptz)")
        db.execute(f"INSERT INTO {schema}.outbox VALUES (1, NULL), (2, now()), (3, NULL)")
    drainer = bench_probe.Drainer(servers.amqp_url, servers.database_url, [missing, queue],
                                  [schema, "no_such_schema"]).open()
    try:
        for _ in range(2):  # after the 404 closed the channel, the next reads still work
            assert drainer.queue_depths() == {queue: 3}
        assert drainer.outbox_backlog() == {schema: 2}
        me = bench_probe.Watched("bench client", (1,), True)
        s = drainer.sample([me], [])
        assert s.remaining == 5 and "3 messages queued" in s.describe()
        ch.queue_purge(queue)
        with psycopg.connect(servers.database_url, autocommit=True) as db:
            db.execute(f"UPDATE {schema}.outbox SET published_at = now()")
        result = drainer.wait([me], [], timeout=30, say=lambda _: None)
        assert not result.timed_out and result.remaining == 0
        assert drainer.own_backend is not None
    finally:
        drainer.close()
        ch.queue_delete(queue)
        conn.close()
        with psycopg.connect(servers.database_url, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")


def test_the_queues_waited_for_are_those_migrate_declares_and_the_retry_queues(migrated: dict[str, str]) -> None:
    from oms.cli import bench_probe

    queues = bench_probe.consumed_queues([1, 5])
    assert "oms.fulfillment.orders" in queues and "oms.payments.orders" in queues
    assert queues[-2:] == ["oms.delay.1s", "oms.delay.5s"] and "oms.dead-letters" not in queues
    assert set(bench_probe.outbox_schemas()) >= {"orders", "payments", "fulfillment", "notifications"}


def test_the_report_names_the_database_settings_that_move_every_figure(servers: Servers) -> None:
    """Autovacuum off (as on this machine's CI Postgres) leaves dead rows for the whole run: the report says so."""
    import psycopg

    from oms.cli import bench_all

    with psycopg.connect(servers.database_url) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    assert row is not None
    report = bench_all.Report(machine={}, date="d", command="oms bench", load_client="wrk", processes=[])
    bench_all._database_facts(report, servers.database_url)
    assert f"autovacuum {row[0]}" in report.machine["postgres"] and "shared_buffers" in report.machine["postgres"]
    assert any("autovacuum is off" in note for note in report.notes) == (row[0] == "off")
