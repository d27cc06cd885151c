"""``oms bench relay``: how many events/s the outbox relay publishes, next to RabbitMQ's own publish rate.

Measured in-process, against the configured Postgres and RabbitMQ, without a running system: a scratch schema
gets the shared backbone tables (the same migrations ``oms migrate`` applies), N events are written to its
outbox with ``emit_many`` (a backlog, as after a burst), a scratch durable queue is bound to the probe's event
type so the relay's mandatory publishes are routed and kept, and a ``Relay`` drains the outbox. Events/s =
events / (last one marked published − relay start); CPU µs per event = this process' CPU over the drain (the
relay is the only thing running in it then). In the same run, RabbitMQ's persistent publish rate with batched
confirms (``oms.cli.bench_raw``) is the limit the relay is compared with. The schema and the queue are dropped
after.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from shared.envelope import EventModel

PROBE_TYPE = "bench.relay_probe.v1"


class RelayProbe(EventModel):
    """A probe event about the size of an ``order.placed.v1``."""

    event_type: ClassVar[str] = PROBE_TYPE
    number: int
    channel: str = "web"
    currency: str = "EUR"
    total: str = "24.90"
    items: list[dict[str, Any]]


@dataclass
class RelayBenchResult:
    events: int
    batch_size: int
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    routed: int = 0  # messages found in the scratch queue after the drain
    raw_publish_per_s: float = 0.0
    raw_error: str | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6 if self.events else 0.0

    @property
    def ratio(self) -> float | None:
        return self.rate / self.raw_publish_per_s if self.raw_publish_per_s else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "events_per_s": self.rate, "cpu_us_per_event": self.cpu_us_per_event,
                "ratio_to_raw_publish": self.ratio}


def _write_backlog(database_url: str, schema: str, events: int, subjects: int = 1000, chunk: int = 5000) -> None:
    import psycopg

    from shared.outbox import Emission, emit_many

    item = {"sku": "TEE-BLK-M", "quantity": 1, "unit_price": "24.90"}
    with psycopg.connect(database_url, options=f"-c search_path={schema}") as conn:
        for start in range(0, events, chunk):
            emissions = [
                Emission(RelayProbe(number=n, items=[item, item]), subject=str(uuid.UUID(int=n % subjects + 1)),
                         correlation_id=f"bench-{n}", causation_id="oms-bench-relay")
                for n in range(start, min(events, start + chunk))
            ]
            with conn.transaction():
                emit_many(conn, "bench", emissions)


def measure(database_url: str, amqp_url: str, events: int = 50_000, batch_size: int = 500,
            raw_messages: int = 20_000, progress: Any = None) -> RelayBenchResult:
    import psycopg

    from oms.cli import bench_raw
    from shared.amqp import EVENTS_EXCHANGE, connect
    from shared.db import ensure_database
    from shared.migrate import SHARED_MIGRATIONS, migrate_schema
    from shared.outbox import Relay

    def say(text: str) -> None:
        if progress:
            progress(text)

    result = RelayBenchResult(events, batch_size)
    tag = uuid.uuid4().hex[:8]
    schema = f"oms_bench_relay_{tag}"
    queue = f"oms.bench.relay.{tag}"
    ensure_database(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    amqp_conn = connect(amqp_url)
    try:
        channel = amqp_conn.channel()
        channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True, auto_delete=False)
        channel.queue_declare(queue, durable=True, auto_delete=False)
        channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key=PROBE_TYPE)
        try:
            say("creating the scratch outbox…")
            migrate_schema(database_url, schema, [SHARED_MIGRATIONS])
            say(f"writing {events} events to the scratch outbox…")
            _write_backlog(database_url, schema, events)
            relay = Relay(database_url, schema, amqp_url, batch_size=batch_size, idle_wait=0.2)
            say(f"relaying {events} events…")
            thread = threading.Thread(target=relay.run, name="bench-relay", daemon=True)
            cpu0, t0 = time.process_time(), time.perf_counter()
            thread.start()
            deadline = t0 + 600
            while relay.published < events and time.perf_counter() < deadline and thread.is_alive():
                time.sleep(0.005)
            result.seconds = time.perf_counter() - t0
            result.cpu_seconds = time.process_time() - cpu0
            relay.stop()
            thread.join(10)
            result.routed = channel.queue_declare(queue, passive=True).message_count
        finally:
            channel.queue_delete(queue)
            channel.close()
    finally:
        amqp_conn.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    say(f"RabbitMQ's own publish rate ({raw_messages} persistent messages, confirms per 500)…")
    raw = bench_raw.rabbitmq(amqp_url, raw_messages, 500)
    result.raw_publish_per_s = raw.publish.rate
    result.raw_error = raw.publish.error
    return result
