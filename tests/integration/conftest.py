from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Servers

PROBE_MIGRATIONS = Path(__file__).parent / "probe_migrations"


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {result!r})")
        time.sleep(interval)


@pytest.fixture(scope="session")
def probe_schema(migrated: dict[str, str], servers: Servers) -> str:
    import psycopg

    from shared.amqp import Topology, declare_topology
    from shared.consumer import subscriptions_of
    from shared.migrate import SHARED_MIGRATIONS, migrate_schema
    from tests.integration.probe_service import ProbeService

    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS probe")
    migrate_schema(servers.database_url, "probe", [SHARED_MIGRATIONS, PROBE_MIGRATIONS])
    declare_topology(servers.amqp_url, Topology(subscriptions_of(ProbeService), retry_delays=(1, 1, 1)))
    return "probe"


@pytest.fixture(scope="session")
def probe_db(probe_schema: str, servers: Servers) -> Iterator[Any]:
    from shared.db import Database

    db = Database(servers.database_url, "probe", size=4)
    db.open()
    yield db
    db.close()


@pytest.fixture(scope="session")
def orders_db(migrated: dict[str, str], servers: Servers) -> Iterator[Any]:
    from shared.db import Database

    db = Database(servers.database_url, "orders", size=8)
    db.open()
    yield db
    db.close()


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


def note_event(subject: str, sequence: int, text: str, **overrides: Any) -> Any:
    """An ``order.note_added.v1`` CloudEvent as the orders service would publish it."""
    from services.orders.contracts.events import OrderNoteAdded
    from shared.envelope import Envelope

    data = OrderNoteAdded(
        order_id=uuid.UUID(subject),
        number=1001,
        test=True,
        version=sequence,
        at=datetime.now(UTC),
        actor={"type": "staff", "id": "t", "name": "Tester"},
        note_id=uuid.uuid4(),
        text=text,
    )
    fields = dict(
        source="/oms/orders",
        type=OrderNoteAdded.event_type,
        subject=subject,
        sequence=sequence,
        correlationid=subject,
        causationid="test",
        data=data.model_dump(mode="json"),
    )
    fields.update(overrides)
    return Envelope(**fields)


def publish_raw(amqp_url: str, routing_key: str, body: bytes, **props: Any) -> None:
    from shared.amqp import EVENTS_EXCHANGE, ConfirmedPublisher, OutgoingMessage

    with ConfirmedPublisher(amqp_url) as pub:
        pub.publish([OutgoingMessage(EVENTS_EXCHANGE, routing_key, body, {"delivery_mode": 2, **props})])


def publish_events(amqp_url: str, envelopes: list[Any]) -> None:
    from shared.amqp import ConfirmedPublisher

    with ConfirmedPublisher(amqp_url) as pub:
        pub.publish([e.to_message() for e in envelopes])


def peek_queue(amqp_url: str, queue: str) -> list[dict[str, Any]]:
    """Every message in a queue, left in place (got without ack, then returned by closing the channel)."""
    from shared.amqp import connect

    conn = connect(amqp_url)
    try:
        ch = conn.channel()
        out = []
        while True:
            msg = ch.basic_get(queue, no_ack=False)
            if msg is None:
                break
            out.append(
                {
                    "body": msg.body,
                    "headers": dict(msg.properties.get("application_headers") or {}),
                    "message_id": msg.properties.get("message_id"),
                }
            )
        ch.close()
        return out
    finally:
        conn.close()
