"""CPU a subscriber spends per consumed event, at several batch sizes: ``python bench/consume_cpu.py``.

Starts the batch probe service (``tests.integration.probe_service:BatchProbeService``: two subscriptions, one
wildcard and one typed, each applying every event through ``shared.inbox.process_batch`` with one INSERT of
its own) on a database and RabbitMQ vhost of its own, publishes N ``order.note_added.v1`` events (orders of 5
events each, in order), and reads the process's CPU time from ``/proc/<pid>/stat`` before and after all of
them were applied. Each event is consumed twice (once per subscription), so CPU/event = CPU / (2 N).

Needs the local Postgres (trust) and RabbitMQ with ``rabbitmqctl`` (for the vhost), as the tests do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET = "tests.integration.probe_service:BatchProbeService"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def applied(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM probe.batch_effects").fetchone()
        return int(row[0]) if row else 0


def events(n: int) -> list[Any]:
    from tests.integration.conftest import note_event

    out: list[Any] = []
    while len(out) < n:
        subject = str(uuid.uuid4())
        out += [note_event(subject, k, f"n{k}", typecounts=f"order.note_added.v1:{k}") for k in range(1, 6)]
    return out[:n]


def run(batch_size: int, n: int, database_url: str, amqp_url: str, log: Path) -> dict[str, float]:
    from shared.amqp import ConfirmedPublisher

    env = {
        **os.environ, "OMS_DATABASE_URL": database_url, "OMS_AMQP_URL": amqp_url, "OMS_LOG_LEVEL": "INFO",
        "OMS_PROBE_BATCH_SIZE": str(batch_size), "OMS_PROBE_BATCH_WAIT": "0.005", "OMS_PROBE_RECORD_ATTEMPTS": "0",
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("OMS_METRICS_PORT", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shared.runtime", TARGET], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"probe did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(1.0)
        start_count = applied(database_url)
        batch = events(n)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        with ConfirmedPublisher(amqp_url) as pub:
            for i in range(0, n, 500):
                pub.publish([e.to_message() for e in batch[i:i + 500]])
        target = start_count + 2 * n
        while applied(database_url) < target:
            if time.monotonic() - t0 > 600:
                raise SystemExit("timed out waiting for the events to be applied")
            time.sleep(0.05)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"batch_size": batch_size, "events": 2 * n, "cpu_s": cpu, "wall_s": wall,
            "cpu_ms_per_event": 1000 * cpu / (2 * n), "events_per_s": 2 * n / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="events published per run (each consumed twice)")
    parser.add_argument("--batch-sizes", default="1,10,100")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()

    import psycopg

    from shared.amqp import Topology, declare_topology
    from shared.consumer import subscriptions_of
    from shared.db import with_database
    from shared.migrate import SHARED_MIGRATIONS, migrate_schema
    from tests.conftest import _create_vhost, _delete_vhost, _vhost_url
    from tests.integration.conftest import PROBE_MIGRATIONS
    from tests.integration.probe_service import BatchProbeService

    run_id = uuid.uuid4().hex[:8]
    dbname, vhost = f"oms_consume_bench_{run_id}", f"oms_consume_bench_{run_id}"
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    _create_vhost(args.amqp_url, vhost)
    database_url, amqp_url = with_database(args.database_url, dbname), _vhost_url(args.amqp_url, vhost)
    logs = Path(f"/tmp/{dbname}")
    logs.mkdir(exist_ok=True)
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA probe")
        migrate_schema(database_url, "probe", [SHARED_MIGRATIONS, PROBE_MIGRATIONS])
        declare_topology(amqp_url, Topology(subscriptions_of(BatchProbeService)))
        print(f"{'batch size':>10} {'events':>7} {'CPU s':>7} {'wall s':>7} {'CPU ms/event':>13} {'events/s':>9}")
        for size in (int(s) for s in args.batch_sizes.split(",")):
            r = run(size, args.events, database_url, amqp_url, logs / f"probe-{size}.log")
            print(f"{r['batch_size']:>10} {r['events']:>7} {r['cpu_s']:>7.2f} {r['wall_s']:>7.2f} "
                  f"{r['cpu_ms_per_event']:>13.3f} {r['events_per_s']:>9.0f}", flush=True)
    finally:
        _delete_vhost(args.amqp_url, vhost)
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
