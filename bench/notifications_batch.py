"""Notifications' two hot consumers in-process on a real Postgres: N ``order.placed`` envelopes (each with a
customer e-mail, so two messages: the customer's and the store's) pushed through ``handle_events`` (messages)
and ``handle_story_events`` (timeline and alerts) in batches, as the subscriber hands them over. Prints
events/s per consumer. No broker, no sender.

    OMS_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/oms_bench_nbatch python bench/notifications_batch.py
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import psycopg

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from services.notifications.settings import NotificationSettings  # noqa: E402
from services.notifications.usecases import events as nevents  # noqa: E402
from services.notifications.usecases import timeline  # noqa: E402
from shared.config import get_settings  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.migrate import migrate  # noqa: E402
from tests.builders import OrderStream, place_order  # noqa: E402

N = int(os.environ.get("N", "2000"))
BATCH = int(os.environ.get("BATCH", "100"))


def main() -> None:
    url = os.environ["OMS_DATABASE_URL"]
    admin, _, name = url.rpartition("/")
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    migrate(get_settings())
    settings = NotificationSettings(store_email="shop@example.com")
    envs = []
    for i in range(N):
        stream = OrderStream.place(place_order(currency="TND", lines=[("TEE", 2, "19.900")],
                                               customer={"name": "Lina Ben Ali",
                                                         "email": f"b{uuid.uuid4().hex[:8]}@example.com"}),
                                   number=1000 + i)
        envs.extend(stream.envelopes)
    db = Database(url, "notifications", size=2)
    db.open()
    try:
        for label, run in (("messages", lambda b: nevents.handle_events(db, settings, "orders", b)),
                           ("timeline", lambda b: timeline.handle_story_events(db, "orders", b))):
            t0 = time.perf_counter()
            c0 = time.process_time()
            for i in range(0, len(envs), BATCH):
                run(envs[i:i + BATCH])
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"{label}: {len(envs)} events in {wall:.2f} s: {len(envs) / wall:,.0f} events/s,"
                  f" {cpu / len(envs) * 1e6:,.0f} µs Python CPU per event (batch {BATCH})")
        with db.transaction() as tx:
            counts = tx.execute("SELECT (SELECT count(*) FROM messages) AS messages,"
                                " (SELECT count(*) FROM message_history) AS history,"
                                " (SELECT count(*) FROM alerts) AS alerts,"
                                " (SELECT count(*) FROM timeline_entries) AS entries").fetchone()
        print(dict(counts))
    finally:
        db.close()


if __name__ == "__main__":
    main()
