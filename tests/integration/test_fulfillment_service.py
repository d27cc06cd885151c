"""The fulfillment Nameko service as it runs: two processes consuming the order events from RabbitMQ against one
Postgres. Orders placed over the bus reserve their units; many orders racing for the last unit across both
processes get it exactly once, and the stock never goes negative."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.fulfillment import usecases as f
from services.orders.contracts.schemas import Stage
from tests.builders import OrderStream, place_order
from tests.conftest import Servers
from tests.integration.conftest import publish_events, wait_for
from tests.processes import service_process

pytestmark = pytest.mark.integration

STAFF = {"type": "staff", "id": "tester", "name": "Tester"}


@pytest.fixture(scope="module")
def db(migrated: dict[str, str], servers: Servers) -> Iterator[Any]:
    from shared.db import Database

    database = Database(servers.database_url, "fulfillment", size=4)
    database.open()
    yield database
    database.close()


@pytest.fixture(scope="module")
def two_services(migrated: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Two fulfillment processes on the same queue (a scaled-out deployment)."""
    env = {**migrated, "OMS_METRICS_PORT": "0"}
    first, second = tmp_path_factory.mktemp("fulfillment-a"), tmp_path_factory.mktemp("fulfillment-b")
    with service_process("fulfillment", env, first) as log_a, service_process("fulfillment", env, second) as log_b:
        yield log_a, log_b


def reservation(db: Any, order_id: str) -> str | None:
    with db.transaction() as tx:
        row = tx.execute("SELECT reservation FROM fulfillment_orders WHERE order_id = %s", (order_id,)).fetchone()
    return row["reservation"] if row else None


def level(db: Any, sku: str) -> tuple[int, int]:
    with db.transaction() as tx:
        row = tx.execute("SELECT on_hand, reserved FROM stock_levels WHERE sku = %s AND location = 'main'",
                         (sku,)).fetchone()
    assert row is not None
    return int(row["on_hand"]), int(row["reserved"])


def consumers(amqp_url: str) -> int:
    """How many processes consume fulfillment's order-events queue."""
    from shared.amqp import connect
    from shared.consumer import queue_name

    conn = connect(amqp_url)
    try:
        ch = conn.channel()
        _name, _messages, count = ch.queue_declare(queue_name("fulfillment", "orders"), passive=True)
        ch.close()
        return int(count)
    finally:
        conn.close()


def new_order(sku: str, quantity: int = 1) -> OrderStream:
    return OrderStream.place(place_order(lines=[(sku, quantity, "10.00")]), number=int(uuid.uuid4().int % 900_000))


def test_an_order_placed_over_the_bus_reserves_and_its_cancel_releases(
    db: Any, servers: Servers, two_services: tuple[Path, Path]
) -> None:
    sku = f"BUS-{uuid.uuid4().hex[:8]}"
    f.set_stock(db, sku, {"on_hand": 3, "reason": "stock take"}, STAFF)
    stream = new_order(sku, 2)
    publish_events(servers.amqp_url, stream.envelopes)
    wait_for(lambda: reservation(db, stream.order_id) == "reserved", what="the reservation")
    assert level(db, sku) == (3, 2)
    publish_events(servers.amqp_url, [stream.move(Stage.cancelled)])
    wait_for(lambda: reservation(db, stream.order_id) == "released", what="the release")
    assert level(db, sku) == (3, 0)
    assert f.get_fulfillment(db, stream.order_id)["status"] == "canceled"


def test_the_last_unit_goes_to_exactly_one_of_many_orders_across_two_processes(
    db: Any, servers: Servers, two_services: tuple[Path, Path]
) -> None:
    sku = f"LAST-{uuid.uuid4().hex[:8]}"
    f.set_stock(db, sku, {"on_hand": 1, "reason": "the last one"}, STAFF)
    wait_for(lambda: consumers(servers.amqp_url) == 2, what="both processes consuming the queue")
    streams = [new_order(sku) for _ in range(40)]
    publish_events(servers.amqp_url, [s.envelopes[0] for s in streams])

    def settled() -> list[str | None] | None:
        states = [reservation(db, s.order_id) for s in streams]
        return states if all(st in ("reserved", "out_of_stock") for st in states) else None

    states = wait_for(settled, timeout=60, what="every order's reservation")
    assert states.count("reserved") == 1
    assert states.count("out_of_stock") == 39
    assert level(db, sku) == (1, 1)
    with db.transaction() as tx:
        moves = tx.execute("SELECT delta_on_hand, delta_reserved, on_hand_after, reserved_after FROM stock_movements"
                           " WHERE sku = %s ORDER BY id", (sku,)).fetchall()
        per_process = tx.execute(
            "SELECT count(DISTINCT consumer) AS c FROM inbox WHERE event_id = ANY(%s)",
            ([s.envelopes[0].id for s in streams],)).fetchone()
    assert sum(m["delta_on_hand"] for m in moves) == 1 and sum(m["delta_reserved"] for m in moves) == 1
    assert all(m["reserved_after"] <= m["on_hand_after"] and m["reserved_after"] >= 0 for m in moves)
    assert per_process is not None and per_process["c"] == 1  # one consumer name, two processes behind it
    logs = [p.read_text() for p in two_services]
    assert all("Traceback" not in text for text in logs), logs
