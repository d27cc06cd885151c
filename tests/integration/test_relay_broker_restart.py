"""The outbox relay across a broker outage: orders keep being placed while RabbitMQ is stopped, their
events wait in the outbox, and every one of them reaches a subscriber once the broker is back."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Servers
from tests.integration.conftest import wait_for
from tests.processes import service_process

pytestmark = [pytest.mark.integration, pytest.mark.broker_restart]

ORDER = {
    "channel": "marketplace",
    "customer": {"name": "Burst Buyer", "email": "burst@example.com"},
    "items": [{"sku": "BURST-1", "name": "Burst item", "quantity": 1, "unit_price": "3.00"}],
    "currency": "EUR",
    "test": True,
}
ACTOR = {"type": "integration", "id": "restart-test", "name": "Restart test"}


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture()
def local_broker(servers: Servers) -> None:
    if not shutil.which("rabbitmqctl") or urlsplit(servers.amqp_url).hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("needs the local RabbitMQ and rabbitmqctl to stop and start the broker")


def test_relay_survives_a_broker_restart_in_the_middle_of_a_burst(
    local_broker: None, migrated: dict[str, str], servers: Servers, orders_db: Any, logs: Any
) -> None:
    import pika

    from services.orders.usecases import place_order

    tap_name = "test.restart-tap"
    conn = pika.BlockingConnection(pika.URLParameters(servers.amqp_url))
    ch = conn.channel()
    ch.queue_declare(tap_name, durable=True)  # durable: it must keep what it got across the restart
    ch.queue_bind(tap_name, "oms.events", routing_key="order.placed.v1")
    conn.close()

    placed: list[str] = []
    outage = {"down_at": 0, "up_at": 0}

    def restart_broker() -> None:
        wait_for(lambda: len(placed) >= 100, timeout=60, what="100 orders before the outage")
        outage["down_at"] = len(placed)
        _rabbitmqctl("stop_app")
        time.sleep(3)
        _rabbitmqctl("start_app")
        _rabbitmqctl("await_startup")
        outage["up_at"] = len(placed)

    with service_process("orders", migrated, logs):
        restarter = threading.Thread(target=restart_broker)
        restarter.start()
        deadline = time.monotonic() + 90
        while (restarter.is_alive() or len(placed) < outage["up_at"] + 100) and time.monotonic() < deadline:
            placed.append(place_order(orders_db, ORDER, ACTOR)["id"])  # Postgres only: works while the broker is down
        restarter.join()
        assert outage["up_at"] > outage["down_at"], "orders were placed while the broker was down"

        def unpublished() -> int:
            with orders_db.transaction() as tx:
                row = tx.execute(
                    "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL AND subject = ANY(%s)",
                    ([str(p) for p in placed],),
                ).fetchone()
                return int(row["n"])

        wait_for(lambda: unpublished() == 0, timeout=60, what="the outbox to drain after the restart")

    conn = pika.BlockingConnection(pika.URLParameters(servers.amqp_url))
    ch = conn.channel()
    received: list[dict[str, Any]] = []
    while True:
        method, _props, body = ch.basic_get(tap_name, auto_ack=True)
        if method is None:
            break
        received.append(json.loads(body))
    ch.queue_delete(tap_name)
    conn.close()

    mine = [e for e in received if e["subject"] in set(placed)]
    by_id = Counter(e["id"] for e in mine)
    assert {e["subject"] for e in mine} == set(placed), "an event committed during the outage was lost"
    assert len(by_id) == len(placed)  # one event id per order: no second event was ever created
    duplicates = sum(n - 1 for n in by_id.values())
    # The bus is at-least-once: a batch unconfirmed when the broker went down is sent again after it
    # returns. Such a copy is the same event (same id and sequence), which the inbox turns into one effect.
    for event_id, n in by_id.items():
        if n > 1:
            copies = {json.dumps(e, sort_keys=True) for e in mine if e["id"] == event_id}
            assert len(copies) == 1, "a resent event must be identical to the first copy"
    print(f"\nplaced {len(placed)} orders ({outage['up_at'] - outage['down_at']} while the broker was down); "
          f"received all; {duplicates} identical redeliveries of unconfirmed events")
