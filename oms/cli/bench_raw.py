"""This machine's raw limits, measured on the spot by ``oms bench`` (part 1): what the infrastructure alone does.

- Postgres: a transaction of two INSERTs (the shape of a placement: a row and its event) into scratch tables
  created for the run and dropped after it, at 1 and 16 clients. Clients are spread over one OS process per
  CPU so that the Python client's GIL does not become the limit being measured.
- RabbitMQ: persistent messages to a durable scratch queue with publisher confirms awaited in batches, then
  consumed and acked one by one (aio-pika, the gateway's AMQP library).
- HTTP: a bare uvicorn JSON endpoint (``oms.cli.bench_echo``) started on a free port, driven by the same load
  client as placement.

Every throughput ``oms bench`` reports for the system is divided by the matching limit here.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from oms.cli.common import percentile


@dataclass
class RawResult:
    what: str
    clients: int
    operations: int = 0
    seconds: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0


# ------------------------------------------------------------------------------------------------ Postgres
def _pg_worker(database_url: str, table: str, threads: int, seconds: float, start_at: float) -> tuple[int, list[float]]:
    """One OS process: ``threads`` connections each committing two-insert transactions until the deadline."""
    import threading

    import psycopg

    latencies: list[float] = []
    counts = [0] * threads
    lock = threading.Lock()

    def client(i: int) -> None:
        mine: list[float] = []
        with psycopg.connect(database_url) as conn:
            while time.time() < start_at:
                time.sleep(0.005)
            deadline = start_at + seconds
            while time.time() < deadline:
                t0 = time.perf_counter()
                with conn.transaction():
                    row = conn.execute(
                        f"INSERT INTO {table}_a (payload) VALUES (%s) RETURNING id", ('{"order": 1}',)
                    ).fetchone()
                    assert row is not None
                    conn.execute(f"INSERT INTO {table}_b (a_id, payload) VALUES (%s, %s)", (row[0], '{"event": 1}'))
                mine.append(time.perf_counter() - t0)
                counts[i] += 1
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts), latencies


def postgres_two_insert(database_url: str, clients: int, seconds: float = 5.0) -> RawResult:
    """Two-insert transactions per second (and their latency) with ``clients`` connections."""
    import psycopg

    result = RawResult("postgres two-insert transaction", clients)
    table = f"oms_bench_scratch_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {table}_a (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
            conn.execute(
                f"CREATE TABLE {table}_b (id bigserial PRIMARY KEY, a_id bigint NOT NULL, payload jsonb NOT NULL)"
            )
        try:
            procs = max(1, min(clients, os.cpu_count() or 1))
            per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
            start_at = time.time() + 1.5  # every connection open before the clock starts
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(procs) as pool:
                parts = pool.starmap(_pg_worker, [(database_url, table, n, seconds, start_at) for n in per])
            latencies = sorted(lat for _, lats in parts for lat in lats)
            result.operations = sum(n for n, _ in parts)
            result.seconds = seconds
            result.p50_ms = percentile(latencies, 50) * 1000
            result.p99_ms = percentile(latencies, 99) * 1000
        finally:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}_a, {table}_b")
    except Exception as exc:  # noqa: BLE001 - a limit that cannot be measured is reported, not fatal
        result.error = repr(exc)
    return result


# ------------------------------------------------------------------------------------------------ RabbitMQ
BODY = (b'{"specversion":"1.0","id":"6f1c0000-0000-0000-0000-000000000000","source":"/oms/orders",'
        b'"type":"order.placed.v1","subject":"00000000-0000-0000-0000-000000000000","sequence":1,'
        b'"data":{"number":1001,"channel":"web","currency":"EUR","total":"24.90","items":[{"sku":"TEE-BLK-M",'
        b'"quantity":1,"unit_price":"24.90"}]}}')


@dataclass
class RabbitResult:
    publish: RawResult
    consume: RawResult
    batch: int = 0


async def _rabbit(amqp_url: str, messages: int, batch: int) -> RabbitResult:
    import aio_pika

    publish = RawResult("rabbitmq persistent publish, batched confirms", 1)
    consume = RawResult("rabbitmq consume + ack", 1)
    queue_name = f"oms.bench.scratch.{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(queue_name, durable=True)
        try:
            exchange = channel.default_exchange
            start = time.perf_counter()
            sent = 0
            while sent < messages:
                n = min(batch, messages - sent)
                await asyncio.gather(*(
                    exchange.publish(
                        aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                         content_type="application/json"),
                        routing_key=queue_name,
                    )
                    for _ in range(n)
                ))
                sent += n
            publish.seconds = time.perf_counter() - start
            publish.operations = sent

            consume_channel = await connection.channel()
            await consume_channel.set_qos(prefetch_count=min(batch, 1000))
            scratch = await consume_channel.get_queue(queue_name)
            done = asyncio.Event()
            received = 0

            async def on_message(message: Any) -> None:
                nonlocal received
                await message.ack()
                received += 1
                if received >= sent:
                    done.set()

            start = time.perf_counter()
            tag = await scratch.consume(on_message)
            await asyncio.wait_for(done.wait(), timeout=120)
            consume.seconds = time.perf_counter() - start
            consume.operations = received
            await scratch.cancel(tag)
        finally:
            await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return RabbitResult(publish, consume, batch)


def rabbitmq(amqp_url: str, messages: int = 20_000, batch: int = 500) -> RabbitResult:
    try:
        return asyncio.run(_rabbit(amqp_url, messages, batch))
    except Exception as exc:  # noqa: BLE001
        failed = RabbitResult(RawResult("rabbitmq persistent publish, batched confirms", 1, error=repr(exc)),
                              RawResult("rabbitmq consume + ack", 1, error=repr(exc)), batch)
        return failed


# ------------------------------------------------------------------------------------------------ bare HTTP
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BareHttp:
    """The bare endpoint's process, while the block runs."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/orders"

    def __enter__(self) -> BareHttp:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oms.cli.bench_echo", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("the bare HTTP endpoint (python -m oms.cli.bench_echo) did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
