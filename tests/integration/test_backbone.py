"""The event backbone against a real Postgres and RabbitMQ: outbox relay, idempotent ordered consumers,
retries and dead letters, as a subscribing service experiences them."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from tests.conftest import Servers
from tests.integration.conftest import (
    note_event,
    peek_queue,
    publish_events,
    publish_raw,
    wait_for,
)
from tests.processes import service_process

pytestmark = pytest.mark.integration


PROBE_METRICS_PORT = 0


@pytest.fixture(scope="module")
def probe(probe_schema: str, migrated: dict[str, str], logs: Any) -> Any:
    from tests.e2e.conftest import free_port

    global PROBE_METRICS_PORT
    PROBE_METRICS_PORT = free_port()
    env = {**migrated, "OMS_METRICS_PORT": str(PROBE_METRICS_PORT)}
    with service_process("tests.integration.probe_service:ProbeService", env, logs) as log:
        yield log


def handled(outcome: str) -> float:
    """``oms_events_handled_total`` of the probe's queue for an outcome, scraped from its /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{PROBE_METRICS_PORT}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "oms_events_handled_total" and sample.labels.get("outcome") == outcome:
                return float(sample.value)
    return 0.0


def effects(db: Any, subject: str) -> list[dict[str, Any]]:
    with db.transaction() as tx:
        return list(tx.execute("SELECT * FROM effects WHERE subject = %s ORDER BY n", (subject,)).fetchall())


def attempts(db: Any, event_id: uuid.UUID) -> int:
    with db.transaction() as tx:
        row = tx.execute("SELECT count(*) AS c FROM attempts WHERE event_id = %s", (event_id,)).fetchone()
        return int(row["c"])


def dead_letter(servers: Servers, message_id: str) -> dict[str, Any] | None:
    """The probe's dead letter of that message (other services on this vhost may dead-letter their copy)."""
    return next(
        (m for m in peek_queue(servers.amqp_url, "oms.dead-letters")
         if m["message_id"] == message_id and m["headers"].get("x-oms-queue", "").startswith("oms.probe.")),
        None,
    )


def test_a_duplicated_event_has_one_effect(probe: Any, probe_db: Any, servers: Servers) -> None:
    subject = str(uuid.uuid4())
    event = note_event(subject, 1, "hello")
    publish_events(servers.amqp_url, [event, event])
    publish_events(servers.amqp_url, [event])
    wait_for(lambda: effects(probe_db, subject), what="the effect")
    wait_for(lambda: attempts(probe_db, event.id) >= 3, what="all three deliveries")
    assert [e["text"] for e in effects(probe_db, subject)] == ["hello"]


def test_events_arriving_out_of_order_are_applied_in_order(probe: Any, probe_db: Any, servers: Servers) -> None:
    subject = str(uuid.uuid4())
    first, second, third = (note_event(subject, n, f"note {n}") for n in (1, 2, 3))
    publish_events(servers.amqp_url, [third])
    publish_events(servers.amqp_url, [second])
    wait_for(lambda: attempts(probe_db, second.id) == 1, what="the early events to be parked")
    assert effects(probe_db, subject) == []  # nothing applied ahead of the missing first event
    publish_events(servers.amqp_url, [first])
    applied = wait_for(lambda: len(effects(probe_db, subject)) == 3 and effects(probe_db, subject))
    assert [e["sequence"] for e in applied] == [1, 2, 3]


@pytest.mark.parametrize(
    ("routing_key", "body", "reason"),
    [
        ("order.note_added.v1", b"{not json", "body is not JSON"),
        ("order.note_added.v1", b'{"specversion": "1.0", "type": "order.note_added.v1"}', "not a valid CloudEvent"),
        ("order.teleported.v1", None, "unknown event type 'order.teleported.v1'"),
        ("order.note_added.v1", "bad-data", "data of order.note_added.v1 is invalid"),
    ],
    ids=["not-json", "not-a-cloudevent", "unknown-type", "data-fails-schema"],
)
def test_a_malformed_message_is_dead_lettered_at_once_and_the_queue_keeps_flowing(
    probe: Any, probe_db: Any, servers: Servers, routing_key: str, body: Any, reason: str
) -> None:
    poison_id = str(uuid.uuid4())
    if body is None:
        body = note_event(str(uuid.uuid4()), 1, "x", type=routing_key).to_json().encode()
    elif body == "bad-data":
        env = note_event(str(uuid.uuid4()), 1, "x")
        raw = json.loads(env.to_json())
        del raw["data"]["note_id"]
        body = json.dumps(raw).encode()
    publish_raw(servers.amqp_url, routing_key, body, message_id=poison_id, content_type="application/json")
    subject = str(uuid.uuid4())
    publish_events(servers.amqp_url, [note_event(subject, 1, "after the poison")])
    wait_for(lambda: effects(probe_db, subject), what="the next message to be handled")
    dead = wait_for(lambda: dead_letter(servers, poison_id), what="the dead letter")
    assert reason in dead["headers"]["x-oms-error"]
    assert dead["headers"]["x-oms-attempts"] == 1
    assert dead["headers"]["x-oms-queue"] == "oms.probe.orders"
    assert dead["body"] == body


def test_a_permanent_handler_error_is_dead_lettered_without_retries(
    probe: Any, probe_db: Any, servers: Servers
) -> None:
    event = note_event(str(uuid.uuid4()), 1, "permanent")
    publish_events(servers.amqp_url, [event])
    dead = wait_for(lambda: dead_letter(servers, str(event.id)), what="the dead letter")
    assert "PermanentError: this note can never be handled" in dead["headers"]["x-oms-error"]
    assert attempts(probe_db, event.id) == 1


def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered_and_can_be_replayed(
    probe: Any, probe_db: Any, servers: Servers
) -> None:
    subject = str(uuid.uuid4())
    failing = note_event(subject, 1, "fail-until-fixed")
    behind = note_event(subject, 2, "waits for the first")
    other = note_event(str(uuid.uuid4()), 1, "another order")
    dead_before, retried_before = handled("dead_lettered"), handled("retried")
    publish_events(servers.amqp_url, [failing, behind, other])
    # Other orders' events flow while the failing one waits in a delay queue.
    wait_for(lambda: effects(probe_db, other.subject), timeout=5, what="another order's event")
    dead = wait_for(lambda: dead_letter(servers, str(failing.id)), timeout=30, what="the dead letter")
    assert attempts(probe_db, failing.id) == 4  # first try + one per retry delay (OMS_RETRY_DELAYS=1,1,1)
    assert dead["headers"]["x-oms-attempts"] == 4
    assert "RuntimeError: dependency not fixed yet" in dead["headers"]["x-oms-error"]
    assert effects(probe_db, subject) == []  # the second event of that order waits: never applied out of order
    # What an operator's alert sees: three retries, then one dead letter.
    assert handled("retried") - retried_before == 3 and handled("dead_lettered") - dead_before == 1

    with probe_db.transaction() as tx:
        tx.execute("INSERT INTO switches VALUES ('fixed')")
    from typer.testing import CliRunner

    from oms.cli import app

    result = CliRunner().invoke(app, ["dlq", "replay", "--id", str(failing.id)])
    assert result.exit_code == 0, result.output
    applied = wait_for(lambda: len(effects(probe_db, subject)) == 2 and effects(probe_db, subject))
    assert [e["sequence"] for e in applied] == [1, 2]
    assert dead_letter(servers, str(failing.id)) is None


def test_two_relays_publish_each_event_once(probe_schema: str, probe_db: Any, servers: Servers) -> None:
    """Scaled-out services each run a relay: one leads, the other stands by; nothing is published twice."""
    import pika

    from services.orders.contracts.events import OrderNoteAdded
    from shared import outbox
    from shared.outbox import Relay

    params = pika.URLParameters(servers.amqp_url)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    tap = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(tap, "oms.events", routing_key="order.note_added.v1")
    subject = str(uuid.uuid4())
    with probe_db.transaction() as tx:
        tx.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
        for n in range(1, 201):
            data = note_event(subject, n, f"n{n}").data
            outbox.emit(tx, "probe", OrderNoteAdded.model_validate(data), subject=subject, correlation_id=subject,
                        causation_id="test")
    relays = [Relay(servers.database_url, "probe", servers.amqp_url, idle_wait=0.2) for _ in range(2)]
    threads = [threading.Thread(target=r.run, daemon=True) for r in relays]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(r.published for r in relays) >= 200, what="the relays to publish")
        received: list[dict[str, Any]] = []
        def drain() -> int:
            while True:
                method, _props, body = ch.basic_get(tap, auto_ack=True)
                if method is None:
                    return len(received)
                received.append(json.loads(body))
        wait_for(lambda: drain() >= 200, what="200 events on the bus")
        conn.sleep(0.5)
        drain()
    finally:
        for r in relays:
            r.stop()
        for t in threads:
            t.join(timeout=5)
        conn.close()
    mine = [e for e in received if e["subject"] == subject]
    assert [e["sequence"] for e in mine] == list(range(1, 201))
    assert sorted(r.published for r in relays) == [0, 200]  # one leader did all the work
