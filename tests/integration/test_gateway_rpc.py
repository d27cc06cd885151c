"""The gateway's asyncio RPC client against a real Nameko 2.14 service over a real RabbitMQ.

A tiny Nameko service runs in a subprocess (Nameko needs eventlet's monkey patching, the gateway must not
have it) in a dedicated, throwaway RabbitMQ vhost. This proves wire compatibility (request/reply format,
headers, kombu JSON types, error serialization), concurrency (100 calls in flight on one connection) and
prompt recovery when the broker drops the connection (only this test's, found by its connection name).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from services.gateway.context import request_id_var
from services.gateway.rpc import AsyncRpcClient, RemoteServiceError, ServiceTimeout, ServiceUnavailable
from shared.errors import DomainError, IllegalTransition, NotFound

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AMQP_BASE = os.environ.get("OMS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

SERVICE = '''
import eventlet
eventlet.monkey_patch()

import sys, uuid
from datetime import datetime, timezone
from decimal import Decimal

from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.runners import ServiceRunner

from shared.errors import DomainError, IllegalTransition, NotFound
from shared.nameko_ext import lean_replies, survive_lost_replies

survive_lost_replies()  # as shared.runtime runs every service: the answers on the wire are the real ones
lean_replies()


class CardDeclined(DomainError):  # an error class only this service knows
    status = 402
    title = "Card declined"


class WorkerContext(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx


class GatewayTest:
    name = "gwtest"
    ctx = WorkerContext()

    @rpc
    def echo(self, value, delay=0.0):
        eventlet.sleep(delay)
        return value

    @rpc
    def place_order(self, command, actor, idempotency_key=None):
        return {"command": command, "actor": actor, "idempotency_key": idempotency_key}

    @rpc
    def typed(self):
        return {"total": Decimal("12.50"), "at": datetime(2024, 5, 1, 10, tzinfo=timezone.utc),
                "id": uuid.UUID("6f1c1f55-3a2b-4c8e-9a51-0d0c1b2a3f4e")}

    @rpc
    def context(self):
        return {"correlation_id": self.ctx.data.get("correlation_id"), "call_id_stack": self.ctx.call_id_stack}

    @rpc
    def not_found(self, ref):
        raise NotFound(f"No order {ref}.", order_ref=ref)

    @rpc
    def illegal(self):
        raise IllegalTransition("Order #1001 is shipped.", stage="shipped", allowed=["delivered", "returned"])

    @rpc
    def declined(self, order_id):
        raise CardDeclined(f"The card for order {order_id} was declined.", order_id=order_id)

    @rpc
    def boom(self):
        raise KeyError("secret-internal-detail")


runner = ServiceRunner({"AMQP_URI": sys.argv[1], "max_workers": 150})
runner.add_service(GatewayTest)
runner.start()
print("READY", flush=True)
runner.wait()
'''


def _rabbitmqctl(*args: str, check: bool = True) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=check, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def amqp_url() -> Iterator[str]:
    if not shutil.which("rabbitmqctl"):
        pytest.skip("needs rabbitmqctl to create a throwaway vhost")
    vhost = f"oms_gwtest_{uuid.uuid4().hex[:10]}"
    user = urlsplit(AMQP_BASE).username or "guest"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield urlunsplit(urlsplit(AMQP_BASE)._replace(path="/" + quote(vhost, safe="")))
    finally:
        _rabbitmqctl("delete_vhost", vhost, check=False)


@pytest.fixture(scope="module")
def service(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    script = tmp_path_factory.mktemp("gwtest") / "gwtest_service.py"
    script.write_text(SERVICE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), amqp_url], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "READY" in line:
                break
            if not line and proc.poll() is not None:
                raise RuntimeError("the Nameko test service exited")
        yield amqp_url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(coro_fn, amqp_url: str, **client_kwargs):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        client = AsyncRpcClient(amqp_url, **{"timeout": 10.0, "reconnect_interval": 0.5, **client_kwargs})
        await client.start(wait=10)
        assert client.connected
        try:
            return await coro_fn(client)
        finally:
            await client.close()

    return asyncio.run(main())


def test_round_trip_kwargs_and_types(service: str) -> None:
    async def scenario(rpc: AsyncRpcClient) -> None:
        assert await rpc.call("gwtest", "echo", {"a": [1, "2", None]}) == {"a": [1, "2", None]}
        result = await rpc.call(
            "gwtest", "place_order", command={"channel": "web"}, actor={"type": "staff"}, idempotency_key="k1"
        )
        assert result == {"command": {"channel": "web"}, "actor": {"type": "staff"}, "idempotency_key": "k1"}
        typed = await rpc.call("gwtest", "typed")
        assert typed["total"] == Decimal("12.50")
        assert typed["at"].isoformat() == "2024-05-01T10:00:00+00:00"
        assert str(typed["id"]) == "6f1c1f55-3a2b-4c8e-9a51-0d0c1b2a3f4e"

    run(scenario, service)


def test_request_id_travels_in_nameko_context(service: str) -> None:
    async def scenario(rpc: AsyncRpcClient) -> None:
        request_id_var.set("req-42")
        ctx = await rpc.call("gwtest", "context")
        assert ctx["correlation_id"] == "req-42"
        assert ctx["call_id_stack"][0] == "gateway.http.req-42"
        assert ctx["call_id_stack"][-1].startswith("gwtest.context.")

    run(scenario, service)


def test_domain_errors_are_rebuilt(service: str) -> None:
    async def scenario(rpc: AsyncRpcClient) -> None:
        with pytest.raises(NotFound) as not_found:
            await rpc.call("gwtest", "not_found", "1001")
        assert not_found.value.detail == "No order 1001."
        assert not_found.value.extra == {"order_ref": "1001"}
        with pytest.raises(IllegalTransition) as illegal:
            await rpc.call("gwtest", "illegal")
        assert illegal.value.status == 409
        assert illegal.value.extra == {"stage": "shipped", "allowed": ["delivered", "returned"]}
        with pytest.raises(DomainError) as declined:  # a class the gateway never imported: its own problem
            await rpc.call("gwtest", "declined", "o-1")
        assert (declined.value.type, declined.value.title, declined.value.status) == (
            "urn:oms:problem:card-declined", "Card declined", 402)
        assert declined.value.detail == "The card for order o-1 was declined."
        assert declined.value.extra == {"order_id": "o-1"}
        with pytest.raises(RemoteServiceError) as boom:
            await rpc.call("gwtest", "boom")
        assert "secret" not in str(boom.value.detail) and boom.value.status == 502
        with pytest.raises(RemoteServiceError):  # nameko's MethodNotFound
            await rpc.call("gwtest", "no_such_method")
        with pytest.raises(RemoteServiceError):  # nameko's IncorrectSignature
            await rpc.call("gwtest", "echo", 1, 2, 3, 4)

    run(scenario, service)


def test_unknown_service_fails_fast_and_timeout_is_504(service: str) -> None:
    async def scenario(rpc: AsyncRpcClient) -> None:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as unavailable:
            await rpc.call("no_such_service", "anything")
        assert unavailable.value.status == 503
        assert time.monotonic() - started < 2
        with pytest.raises(ServiceTimeout) as timeout:
            await rpc.call("gwtest", "echo", "slow", delay=2.0, timeout=0.3)
        assert timeout.value.status == 504
        assert rpc.in_flight == 0
        assert await rpc.call("gwtest", "echo", "still fine") == "still fine"

    run(scenario, service)


def test_one_hundred_concurrent_calls(service: str) -> None:
    async def scenario(rpc: AsyncRpcClient) -> None:
        started = time.monotonic()
        results = await asyncio.gather(*(rpc.call("gwtest", "echo", i, delay=0.5) for i in range(100)))
        elapsed = time.monotonic() - started
        assert results == list(range(100))  # every reply matched to its own call
        assert elapsed < 5, f"100 calls of 0.5 s took {elapsed:.1f}s: not concurrent"
        # and a burst of fast calls
        many = await asyncio.gather(*(rpc.call("gwtest", "echo", f"v{i}") for i in range(1000)))
        assert many == [f"v{i}" for i in range(1000)]

    run(scenario, service)


def connections_named(name: str) -> list[str]:
    """The broker's pids of the connections whose client-provided name is ``name``: only this test's."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    return [line.split("\t")[0] for line in listing.splitlines() if f'{{"connection_name","{name}"}}' in line]


def close_connections(pids: list[str]) -> int:
    for pid in pids:
        _rabbitmqctl("close_connection", pid, "test: the broker drops the gateway")
    return len(pids)


def test_reconnects_promptly_after_the_broker_drops_the_connection(service: str) -> None:
    async def scenario(rpc: AsyncRpcClient) -> None:
        assert rpc.connection_name.startswith(f"oms-gateway-{os.getpid()}-")
        assert await rpc.call("gwtest", "echo", "before") == "before"
        recoveries = []
        for round_ in range(3):  # again and again: the reply queue and its consumer come back every time
            # The connection is found first and the call's answer comes late: each rabbitmqctl takes 1-4 s on a
            # loaded 2-core machine, and an answer arriving before the drop made the lost call succeed.
            pids = await asyncio.to_thread(connections_named, rpc.connection_name)
            in_flight = asyncio.ensure_future(rpc.call("gwtest", "echo", "lost", delay=8.0))
            await asyncio.sleep(0.3)
            assert await asyncio.to_thread(close_connections, pids) == 1
            dropped = time.monotonic()
            with pytest.raises(ServiceUnavailable) as lost:
                await asyncio.wait_for(in_flight, 2)  # fails at once, not after the timeout
            assert lost.value.status == 503 and lost.value.headers == {"Retry-After": "1"}
            while True:  # meanwhile every call answers at once: 503 with Retry-After, or the answer
                started = time.monotonic()
                try:
                    answer = await rpc.call("gwtest", "echo", round_)
                    assert time.monotonic() - started < 2
                    break
                except ServiceUnavailable as exc:
                    assert exc.status == 503 and exc.headers == {"Retry-After": "1"}
                    assert time.monotonic() - started < 0.5, "a call hung on the dead connection"
                    assert time.monotonic() - dropped < 10, "the client did not reconnect"
                    await asyncio.sleep(0.05)
            assert answer == round_
            recoveries.append(time.monotonic() - dropped)
        print(f"\nreconnected and answering {', '.join(f'{r:.2f}s' for r in recoveries)} after each drop")

    run(scenario, service, reconnect_interval=0.5)
