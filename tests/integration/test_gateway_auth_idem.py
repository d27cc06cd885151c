"""API keys and Idempotency-Key against a real Postgres (a throwaway database with the gateway migration).

The orders service is replaced by a counting in-process stand-in: what is tested here is the gateway's own
state (``gateway.api_keys``, ``gateway.idempotency_keys``), not the RPC path (see test_gateway_rpc.py).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.auth import create_api_key, list_api_keys, revoke_api_key
from services.gateway.rpc import ServiceUnavailable
from services.gateway.settings import GatewaySettings
from shared.errors import IllegalTransition
from tests.fakes import answer_place_orders

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted((ROOT / "services" / "gateway" / "migrations").glob("*.sql"))
ADMIN_URL = os.environ.get("OMS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ORDER_ID = "6f1c1f55-3a2b-4c8e-9a51-0d0c1b2a3f4e"


def order_detail(number: int) -> dict[str, Any]:
    return {
        "id": ORDER_ID, "number": number, "display_number": f"#{number}", "channel": "web", "stage": "placed",
        "customer": {"name": "Ada"}, "currency": "EUR",
        "totals": {"subtotal": "25.00", "shipping": "0.00", "discount": "0.00", "tax": "0.00", "total": "25.00"},
        "item_count": 2, "placed_at": "2024-05-01T10:00:00+00:00", "updated_at": "2024-05-01T10:00:00+00:00",
        "version": 1, "items": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "12.50",
                                 "line_total": "25.00"}],
    }


class CountingOrders:
    """Stand-in for the orders service: every call gets a new order number, so a replay is recognisable."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_with: Exception | None = None
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.connected = True

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if method == "place_orders":  # the gateway batches placements
            return await answer_place_orders(functools.partial(self.call, service, "place_order"), kwargs["requests"])
        self.calls.append((method, kwargs))
        self.entered.set()
        while not self.hold.is_set():
            await asyncio.sleep(0.01)
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        return order_detail(1000 + len(self.calls))


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    name = f"oms_gwtest_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"no Postgres: {exc}")
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path="/" + name))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA gateway")
            conn.execute("SET search_path = gateway")
            for migration in MIGRATIONS:
                conn.execute(migration.read_text())
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def keys(database_url: str) -> dict[str, tuple[uuid.UUID, str]]:
    with psycopg.connect(database_url) as conn:
        return {name: create_api_key(conn, name) for name in ("alice", "bob", "revoked", "revoked-later")}


@pytest.fixture()
def orders() -> CountingOrders:
    return CountingOrders()


@pytest.fixture()
def client(database_url: str, orders: CountingOrders) -> Iterator[TestClient]:
    settings = GatewaySettings(database_url=database_url, db_pool_size=4)
    with TestClient(create_app(settings, rpc=orders), raise_server_exceptions=False) as c:
        yield c


def bearer(keys: dict[str, tuple[uuid.UUID, str]], name: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[name][1]}", **extra}


BODY = {
    "channel": "web", "customer": {"name": "Ada"}, "currency": "EUR",
    "items": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "12.50"}],
}


# ------------------------------------------------------------------------------------------ API keys
def test_key_format_and_storage(database_url: str, keys: dict[str, tuple[uuid.UUID, str]]) -> None:
    key_id, plaintext = keys["alice"]
    prefix, secret = plaintext.split("_")[1:]
    assert plaintext.startswith("oms_") and len(prefix) == 8 and len(secret) >= 32
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT prefix, key_hash FROM gateway.api_keys WHERE id = %s", (key_id,)).fetchone()
        assert stored is not None and stored[0] == prefix
        assert plaintext not in stored[1] and secret not in stored[1] and len(stored[1]) == 64
        listed = {k.name: k for k in list_api_keys(conn)}
    assert listed["alice"].prefix == prefix and listed["alice"].active


def test_missing_wrong_and_revoked_keys_are_401(client: TestClient, database_url: str,
                                                keys: dict[str, tuple[uuid.UUID, str]]) -> None:
    def assert_401(headers: dict[str, str]) -> dict[str, Any]:
        response = client.get("/api/v1/stages", headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")
        return response.json()

    assert_401({})
    alice = keys["alice"][1]
    assert_401({"Authorization": f"Bearer {alice[:-4]}AAAA"})  # right prefix, wrong secret
    assert_401({"X-API-Key": "oms_zzzzzzzz_" + "a" * 40})  # unknown prefix
    assert_401({"X-API-Key": "not-even-a-key"})

    with psycopg.connect(database_url) as conn:
        assert revoke_api_key(conn, keys["revoked"][0])
        assert not revoke_api_key(conn, keys["revoked"][0])  # already revoked
    assert "revoked" in assert_401(bearer(keys, "revoked"))["detail"]

    assert client.get("/api/v1/stages", headers=bearer(keys, "alice")).status_code == 200
    assert client.get("/api/v1/stages", headers={"X-API-Key": alice}).status_code == 200

    # A key in use (so cached for 30 s) and then revoked by prefix stops working at once: the gateway hears
    # the revocation (LISTEN) and drops its cache.
    later = bearer(keys, "revoked-later")
    assert client.get("/api/v1/stages", headers=later).status_code == 200
    assert client.get("/api/v1/stages", headers=later).status_code == 200  # from the cache
    with psycopg.connect(database_url) as conn:
        assert revoke_api_key(conn, keys["revoked-later"][1].split("_")[1])
    deadline = time.monotonic() + 2.0
    while client.get("/api/v1/stages", headers=later).status_code == 200:
        assert time.monotonic() < deadline, "the revoked key still worked 2 s after the revocation"
        time.sleep(0.05)
    assert_401(later)
    with psycopg.connect(database_url) as conn:
        used = {k.name: k.last_used_at for k in list_api_keys(conn)}
    assert used["alice"] is not None and used["bob"] is None


def test_health_checks_the_database(client: TestClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


# ------------------------------------------------------------------------------------------ idempotency
def test_same_key_same_body_is_replayed_once_executed(client: TestClient, orders: CountingOrders,
                                                      keys: dict[str, tuple[uuid.UUID, str]]) -> None:
    headers = bearer(keys, "alice", **{"Idempotency-Key": "order-1"})
    first = client.post("/api/v1/orders", json=BODY, headers=headers)
    assert first.status_code == 201, first.text
    # same body, other key order and whitespace: still the same request
    reordered = {"items": BODY["items"], "currency": "EUR", "customer": {"name": "Ada"}, "channel": "web"}
    second = client.post("/api/v1/orders", json=reordered, headers=headers)
    assert second.status_code == 201
    assert second.json() == first.json()
    assert second.json()["number"] == 1001
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.headers["location"] == first.headers["location"]
    assert len(orders.calls) == 1
    assert orders.calls[0][1]["idempotency_key"] == "order-1"

    # another body with the same key: 422, nothing executed
    other = client.post("/api/v1/orders", json={**BODY, "currency": "USD"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"] == "urn:oms:problem:idempotency-mismatch"
    # same key on another route: also a mismatch
    assert client.post("/api/v1/test-orders", headers=headers).status_code == 422
    assert len(orders.calls) == 1

    # keys belong to one API key: bob's "order-1" is a different request
    bob = client.post("/api/v1/orders", json=BODY, headers=bearer(keys, "bob", **{"Idempotency-Key": "order-1"}))
    assert bob.status_code == 201 and bob.json()["number"] == 1002


def test_in_progress_is_409(client: TestClient, orders: CountingOrders,
                            keys: dict[str, tuple[uuid.UUID, str]]) -> None:
    headers = bearer(keys, "alice", **{"Idempotency-Key": "slow-1"})
    orders.hold.clear()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/api/v1/orders", json=BODY, headers=headers)
        assert orders.entered.wait(10)
        concurrent = client.post("/api/v1/orders", json=BODY, headers=headers)
        assert concurrent.status_code == 409, concurrent.text
        assert concurrent.json()["type"] == "urn:oms:problem:idempotency-in-progress"
        assert concurrent.headers["retry-after"] == "1"
        orders.hold.set()
        assert first.result(10).status_code == 201
    assert client.post("/api/v1/orders", json=BODY, headers=headers).headers["idempotent-replayed"] == "true"
    assert len(orders.calls) == 1


def test_domain_errors_are_replayed_transient_errors_are_not(client: TestClient, orders: CountingOrders,
                                                              keys: dict[str, tuple[uuid.UUID, str]]) -> None:
    headers = bearer(keys, "alice", **{"Idempotency-Key": "move-1"})
    orders.fail_with = IllegalTransition("Order #1001 is shipped.", stage="shipped", allowed=["delivered"])
    first = client.post("/api/v1/orders/1001/transitions", json={"to": "placed"}, headers=headers)
    again = client.post("/api/v1/orders/1001/transitions", json={"to": "placed"}, headers=headers)
    assert first.status_code == again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json() == first.json() and again.json()["allowed"] == ["delivered"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(orders.calls) == 1

    headers = bearer(keys, "alice", **{"Idempotency-Key": "move-2"})
    orders.fail_with = ServiceUnavailable("The message broker is unreachable.")
    assert client.post("/api/v1/orders/1001/transitions", json={"to": "confirmed"}, headers=headers).status_code == 503
    retry = client.post("/api/v1/orders/1001/transitions", json={"to": "confirmed"}, headers=headers)
    assert retry.status_code == 200 and "idempotent-replayed" not in retry.headers
    assert len(orders.calls) == 3


def test_keys_expire_after_24_hours(client: TestClient, orders: CountingOrders, database_url: str,
                                    keys: dict[str, tuple[uuid.UUID, str]]) -> None:
    headers = bearer(keys, "alice", **{"Idempotency-Key": "old-1"})
    assert client.post("/api/v1/orders", json=BODY, headers=headers).status_code == 201
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE gateway.idempotency_keys SET created_at = now() - interval '25 hours'"
                     " WHERE key = 'old-1'")
    fresh = client.post("/api/v1/orders", json={**BODY, "currency": "USD"}, headers=headers)
    assert fresh.status_code == 201 and "idempotent-replayed" not in fresh.headers
    assert len(orders.calls) == 2
    store = client.app.state.gateway.idempotency  # type: ignore[attr-defined]
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE gateway.idempotency_keys SET created_at = now() - interval '25 hours'")
    removed = client.portal.call(store.purge_expired)  # type: ignore[union-attr]
    assert removed >= 1
    started = time.monotonic()
    assert client.get("/api/v1/health").status_code == 200
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------------------------------ payments lag


class LaggingPayments:
    """Orders know the order at once; payments only after ``lag`` calls (its order.placed event in flight)."""

    def __init__(self, lag: int, orders_know: bool = True) -> None:
        self.lag = lag
        self.orders_know = orders_know
        self.payment_calls: list[tuple[str, dict[str, Any]]] = []
        self.order_calls = 0

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        from shared.errors import NotFound

        if service == "orders":
            self.order_calls += 1
            if not self.orders_know:
                raise NotFound(f"No order {kwargs['ref']}.", ref=kwargs["ref"])
            return {**order_detail(1001), "payment_method": "cash_on_delivery"}
        self.payment_calls.append((method, kwargs))
        if len(self.payment_calls) <= self.lag:
            raise NotFound(f"Payments know no order {kwargs['order_id']} (yet).", order_id=kwargs["order_id"])
        return {"order_id": ORDER_ID, "payment_id": "card:plink_1", "link_id": "plink_1", "url": "http://x/pay",
                "amount": "25.00", "currency": "EUR", "status": "open", "capture_method": "automatic"}


def _client_with(database_url: str, rpc: Any) -> TestClient:
    return TestClient(create_app(GatewaySettings(database_url=database_url, db_pool_size=2), rpc=rpc),
                      raise_server_exceptions=False)


def test_payments_catching_up_with_a_new_order_is_waited_for_not_a_404(
    database_url: str, keys: dict[str, tuple[uuid.UUID, str]]
) -> None:
    rpc = LaggingPayments(lag=3)
    with _client_with(database_url, rpc) as c:
        r = c.post("/api/v1/orders/1001/payments/link", headers=bearer(keys, "alice"))
    assert r.status_code == 200, r.text
    assert r.json()["link_id"] == "plink_1" and len(rpc.payment_calls) == 4


def test_payments_that_never_catch_up_answer_503_with_retry_after(
    database_url: str, keys: dict[str, tuple[uuid.UUID, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.gateway.routes import payments as payment_routes

    monkeypatch.setattr(payment_routes, "PAYMENTS_CATCH_UP_SECONDS", 0.3)
    with _client_with(database_url, LaggingPayments(lag=10_000)) as c:
        r = c.post("/api/v1/orders/1001/payments/link", headers=bearer(keys, "alice"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.headers["content-type"] == "application/problem+json"
    assert "not caught up" in r.json()["detail"]


def test_a_manual_payment_uses_the_method_the_order_shows(
    database_url: str, keys: dict[str, tuple[uuid.UUID, str]]
) -> None:
    rpc = LaggingPayments(lag=0)
    with _client_with(database_url, rpc) as c:
        c.post("/api/v1/orders/1001/payments/manual", json={"amount": "25.00"}, headers=bearer(keys, "alice"))
    method, kwargs = rpc.payment_calls[0]
    assert method == "record_manual_payment" and kwargs["command"]["method"] == "cash_on_delivery"


def test_an_order_id_goes_straight_to_payments_and_an_unknown_one_is_a_404_at_once(
    database_url: str, keys: dict[str, tuple[uuid.UUID, str]]
) -> None:
    known = LaggingPayments(lag=0)
    with _client_with(database_url, known) as c:
        r = c.post(f"/api/v1/orders/{ORDER_ID}/payments/link", headers=bearer(keys, "alice"))
    assert r.status_code == 200 and known.order_calls == 0  # no round trip to orders for an id
    nobody = LaggingPayments(lag=10_000, orders_know=False)
    started = time.monotonic()
    with _client_with(database_url, nobody) as c:
        r = c.post(f"/api/v1/orders/{uuid.uuid4()}/payments/link", headers=bearer(keys, "alice"))
    assert r.status_code == 404 and time.monotonic() - started < 2.0
    assert len(nobody.payment_calls) == 1 and nobody.order_calls == 1
