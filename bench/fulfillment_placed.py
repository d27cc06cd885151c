"""Fulfillment applying ``order.placed`` in batches, in-process: ``python bench/fulfillment_placed.py``.

Creates a database of its own (dropped after), migrates it, gives 20 SKUs a stock level, builds N
``order.placed`` envelopes (1-3 lines each over those SKUs) and hands them to
``usecases.handle_order_events`` in batches of the service's size. Reports events/s and the statements
(``execute`` calls; an ``executemany`` counts once: it is pipelined) per event.

``--green`` runs it as the service does (eventlet, psycopg waiting on the hub: ``shared.runtime``'s set-up), where a
round trip costs more client CPU. Needs the local Postgres (trust), as the tests do. No broker: ``migrate`` is
told not to declare queues.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--base", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--green", action="store_true",
                    help="run as the service does: eventlet monkey-patched, psycopg waiting on its hub")
    args = ap.parse_args()
    if args.green:
        from shared.runtime import go_green

        go_green()

    import psycopg

    name = f"oms_bench_fbatch_{uuid.uuid4().hex[:8]}"
    url = f"{args.base}/{name}"
    os.environ["OMS_DATABASE_URL"] = url
    from services.fulfillment import usecases as f
    from services.fulfillment.service import EVENT_BATCH_SIZE
    from shared.config import get_settings
    from shared.db import Database
    from shared.migrate import migrate
    from tests.builders import OrderStream, place_order

    get_settings.cache_clear()
    migrate(get_settings(), declare_amqp=False)
    db = Database(url, "fulfillment", size=2)
    db.open()
    try:
        skus = [f"BENCH-{i:02d}" for i in range(20)]
        staff = {"type": "staff", "id": "bench", "name": "Bench"}
        for s in skus:
            f.set_stock(db, s, {"location": "main", "on_hand": 1_000_000, "reason": "bench"}, staff)
        rng = random.Random(7)
        envs = []
        for n in range(args.events):
            lines = [(s, rng.randint(1, 3), "10.00") for s in rng.sample(skus, rng.randint(1, 3))]
            stream = OrderStream.place(place_order(lines=lines), number=100_000 + n)
            envs.append(stream.envelopes[0])
        batch = args.batch or EVENT_BATCH_SIZE

        calls = [0]
        orig_execute, orig_many = psycopg.Cursor.execute, psycopg.Cursor.executemany

        def execute(self, *a, **kw):  # type: ignore[no-untyped-def]
            calls[0] += 1
            return orig_execute(self, *a, **kw)

        def executemany(self, *a, **kw):  # type: ignore[no-untyped-def]
            calls[0] += 1
            return orig_many(self, *a, **kw)

        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        for i in range(0, len(envs), batch):
            f.handle_order_events(db, None, envs[i:i + batch])
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        psycopg.Cursor.execute, psycopg.Cursor.executemany = orig_execute, orig_many  # type: ignore[method-assign]
        with db.transaction() as tx:
            res = tx.execute("SELECT reservation, count(*) AS n FROM fulfillment_orders GROUP BY 1").fetchall()
            mv = tx.execute("SELECT count(*) AS n FROM stock_movements WHERE order_id IS NOT NULL").fetchone()
        print(f"events {len(envs)}, batch {batch}: {len(envs) / wall:,.0f} events/s, wall {wall:.2f} s, "
              f"client CPU {cpu * 1e3 / len(envs):.2f} ms/event, statements/event {calls[0] / len(envs):.2f}")
        print("orders by reservation:", {r["reservation"]: r["n"] for r in res}, "movements:", mv["n"] if mv else 0)
    finally:
        db.close()
        with psycopg.connect(f"{args.base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
