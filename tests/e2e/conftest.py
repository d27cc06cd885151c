from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Servers
from tests.processes import gateway_process, service_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class System:
    base: str
    key: str
    env: dict[str, str]
    servers: Servers

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="session")
def system(migrated: dict[str, str], servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The orders service and the gateway as real processes on this run's database and vhost."""
    import psycopg

    from services.gateway.auth import create_api_key

    port = free_port()
    env = {**migrated, "OMS_HTTP_PORT": str(port), "OMS_HTTP_HOST": "127.0.0.1"}
    logs = tmp_path_factory.mktemp("e2e-logs")
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        _id, key = create_api_key(conn, "e2e tests")
    with service_process("orders", env, logs), gateway_process(env, logs):
        yield System(f"http://127.0.0.1:{port}/api/v1", key, env, servers)


@pytest.fixture()
def tap(system: System) -> Iterator[Any]:
    """A plain pika consumer's queue on ``oms.events`` (bound before anything is published)."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(system.servers.amqp_url))
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, "oms.events", routing_key="order.#")

    class Tap:
        def drain(self, wait: float = 0.0) -> list[tuple[Any, bytes]]:
            if wait:
                conn.sleep(wait)
            out = []
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    return out
                out.append((props, body))

    yield Tap()
    conn.close()
