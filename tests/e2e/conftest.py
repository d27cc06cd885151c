from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.payments.settings import DEV_WEBHOOK_SECRET
from tests.conftest import Servers
from tests.processes import _process, gateway_process, service_process


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


@dataclass
class Payments:
    system: System
    sandbox: str
    logs: Path

    def api(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.system.base, headers={**self.system.headers, **headers}, timeout=15)


@pytest.fixture(scope="session")
def payments(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Payments]:
    """The payments service and the sandbox provider, next to the orders service and gateway of ``system``.

    The sandbox starts with no arguments, as ``oms run`` starts it: its port, webhook URL (the gateway's
    port) and secret come from the environment.
    """
    sandbox_port = free_port()
    env = {
        **system.env,
        "OMS_SANDBOX_PORT": str(sandbox_port),
        "OMS_SANDBOX_PROVIDER_URL": f"http://127.0.0.1:{sandbox_port}",
        "OMS_SANDBOX_WEBHOOK_SECRET": DEV_WEBHOOK_SECRET,
    }
    logs = tmp_path_factory.mktemp("payments-e2e-logs")
    sandbox_cmd = [sys.executable, "-m", "services.payments.provider.sandbox"]
    with _process(sandbox_cmd, "sandbox", env, logs, "Uvicorn running"), service_process("payments", env, logs):
        yield Payments(system, f"http://127.0.0.1:{sandbox_port}", logs)


def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
