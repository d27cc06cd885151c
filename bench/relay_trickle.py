"""What the outbox relay spends on events that come one at a time (below peak, the usual case), not as a backlog:
``python bench/relay_trickle.py [--events 3000] [--rate 300] [--rounds 3] [--root CHECKOUT ...]``.

Per round and checkout: a scratch schema gets the backbone tables; a writer thread commits N events, each in its
own transaction, at ``--rate`` per second; a ``Relay`` (the checkout's ``shared.outbox``) publishes them to
``oms.events`` with no queue bound. Reports, per event, the relay thread's CPU (``time.thread_time``: the
writer's is not counted), the transactions the database server ran per event (``pg_stat_database``: the
writer's one included, so the relay's share is this minus one; a pipeline without BEGIN is one transaction),
and the commit -> confirmed lag p50/p99. With several ``--root`` checkouts the rounds alternate between them, so
two commits are compared under the same load. Needs the local Postgres and RabbitMQ; the schema is dropped after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ONE = r'''
import json, sys, threading, time, uuid
from datetime import UTC, datetime
import psycopg
from shared import outbox
from shared.config import get_settings
from shared.envelope import Envelope
from shared.db import ensure_database
from shared.migrate import SHARED_MIGRATIONS, migrate_schema

events, rate = int(sys.argv[1]), float(sys.argv[2])
settings = get_settings()
url = settings.database_url
ensure_database(url)
schema = f"relay_trickle_{uuid.uuid4().hex[:8]}"
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute(f"CREATE SCHEMA {schema}")
try:
    migrate_schema(url, schema, [SHARED_MIGRATIONS])
    lags: list[float] = []

    class Timed(outbox.Relay):
        def _confirmed(self, publisher, rows):
            super()._confirmed(publisher, rows)
            now = datetime.now(UTC)
            lags.extend((now - r[7]).total_seconds() for r in rows)

    relay = Timed(url, schema, settings.amqp_url, idle_wait=1.0)
    used = {}

    def run_relay() -> None:
        relay.run()
        used["cpu"] = time.thread_time()

    def write() -> None:
        with psycopg.connect(url, options=f"-c search_path={schema}") as conn:
            for i in range(events):
                subject = str(uuid.uuid4())
                env = Envelope(id=uuid.uuid4(), source="oms.bench", type="bench.trickled.v1", subject=subject,
                               time=datetime.now(UTC), sequence=1, correlationid=subject, causationid=subject,
                               data={"n": i})
                with conn.transaction():
                    outbox._write(conn, [env])
                time.sleep(1 / rate)

    def server_transactions() -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database").fetchone()
            return int(row[0])

    thread = threading.Thread(target=run_relay, daemon=True)
    thread.start()
    while not relay.is_leader:
        time.sleep(0.01)
    time.sleep(0.2)
    x0 = server_transactions()
    writer = threading.Thread(target=write)
    t0 = time.perf_counter()
    writer.start()
    writer.join()
    while relay.published < events:
        time.sleep(0.01)
    seconds = time.perf_counter() - t0
    x1 = server_transactions()
    relay.stop()
    thread.join(10)
    lags.sort()
    print(json.dumps({
        "relay_us_per_event": used["cpu"] * 1e6 / events,
        "xacts_per_event": (x1 - x0) / events,
        "lag_p50_ms": lags[len(lags) // 2] * 1e3, "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1e3,
        "seconds": seconds,
    }))
finally:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
'''


def one(root: Path, events: int, rate: float) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", ONE, str(events), str(rate)], cwd=root, env=env,
                         capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=300.0, help="events written per second, one per transaction")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", action="append", type=Path,
                        help="a checkout whose shared.outbox to measure (repeat to compare; default: this one)")
    args = parser.parse_args()
    roots = args.root or [ROOT]
    print(f"{args.events} events at {args.rate:.0f}/s, one per transaction, no queue bound; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'round':>5} {'checkout':>24} {'relay us/event':>15} {'transactions/event':>19} "
          f"{'lag p50 ms':>11} {'lag p99 ms':>11}")
    seen: dict[Path, list[float]] = {r: [] for r in roots}
    for n in range(1, args.rounds + 1):
        for root in roots:
            f = one(root.resolve(), args.events, args.rate)
            seen[root].append(f["relay_us_per_event"])
            print(f"{n:>5} {str(root)[-24:]:>24} {f['relay_us_per_event']:>15.1f} {f['xacts_per_event']:>19.2f} "
                  f"{f['lag_p50_ms']:>11.2f} {f['lag_p99_ms']:>11.2f}", flush=True)
    for root, values in seen.items():
        print(f"median relay us/event, {root}: {statistics.median(values):.1f}")


if __name__ == "__main__":
    main()
