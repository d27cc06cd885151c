"""What the relay spends on events no queue is bound for, ``mandatory`` (returned whole, as before) against
not (dropped by the broker, as now), alternated: ``python bench/relay_unrouted.py [--events 20000] [--rounds 2]``.

Most of notifications' events (message statuses) and fulfillment's stock events have no subscriber unless an
integrator listens. Per round and mode: a scratch schema gets the backbone tables, N probe events go to its
outbox, and a ``Relay`` drains it with no queue bound to the probe's type. Reports events/s and, per event,
this process's CPU (the relay is the only thing running in it) and the whole broker's (``/proc``; shared:
compare the modes of one round). Needs the local Postgres and RabbitMQ; the schema is dropped after.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oms.cli import bench_probe as probe  # noqa: E402


def broker_cpu() -> float:
    """RabbitMQ's CPU seconds so far (its Erlang VM), as ``oms bench`` counts it."""
    return probe.cpu_snapshot([probe.Watched("rabbitmq", (), True)])["rabbitmq"]


def one(database_url: str, amqp_url: str, events: int, mandatory: bool) -> dict[str, float]:
    import psycopg

    from oms.cli.bench_relay import _write_backlog
    from shared.amqp import ConfirmedPublisher, OutgoingMessage
    from shared.envelope import message_properties
    from shared.migrate import SHARED_MIGRATIONS, migrate_schema
    from shared.outbox import Relay

    class ReturnedRelay(Relay):
        """The relay as it was: every event ``mandatory``, the returned ones counted."""

        returned = 0

        def _send(self, publisher: ConfirmedPublisher, rows: Any) -> None:
            source = self._source
            publisher.send(
                OutgoingMessage("oms.events", event_type, payload.encode(), message_properties(
                    event_id=event_id, event_type=event_type, subject=subject, sequence=sequence,
                    correlation_id=correlation_id, time=created_at, source=source), mandatory=True)
                for _id, event_id, event_type, subject, sequence, correlation_id, payload, created_at in rows)

        def _confirmed(self, publisher: ConfirmedPublisher, rows: Any) -> None:
            super()._confirmed(publisher, rows)
            ReturnedRelay.returned += len(publisher.returned)
            publisher.returned.clear()

    schema = f"relay_unrouted_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        migrate_schema(database_url, schema, [SHARED_MIGRATIONS])
        _write_backlog(database_url, schema, events)
        relay = (ReturnedRelay if mandatory else Relay)(database_url, schema, amqp_url, idle_wait=0.05)
        b0, c0, t0 = broker_cpu(), time.process_time(), time.perf_counter()
        thread = threading.Thread(target=relay.run, daemon=True)
        thread.start()
        while relay.published < events:
            time.sleep(0.01)
        seconds, cpu, broker_used = time.perf_counter() - t0, time.process_time() - c0, broker_cpu() - b0
        relay.stop()
        thread.join(10)
        return {"events/s": events / seconds, "relay us/event": cpu * 1e6 / events,
                "broker us/event": broker_used * 1e6 / events,
                "returned": float(ReturnedRelay.returned if mandatory else 0)}
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from shared.config import get_settings

    settings = get_settings()
    print(f"{args.events} events, no queue bound; load {os.getloadavg()[0]:.1f}")
    print(f"{'round':>5} {'mode':>9} {'events/s':>9} {'relay us/event':>15} {'broker us/event':>16} {'returned':>9}")
    for r in range(1, args.rounds + 1):
        for mandatory in (True, False):
            f = one(settings.database_url, settings.amqp_url, args.events, mandatory)
            print(f"{r:>5} {'mandatory' if mandatory else 'dropped':>9} {f['events/s']:>9.0f} "
                  f"{f['relay us/event']:>15.1f} {f['broker us/event']:>16.1f} {f['returned']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
