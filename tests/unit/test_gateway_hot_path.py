"""The hot path (``services/gateway/hot_path.py``) answers exactly as FastAPI does.

Every request below is sent to two apps built the same way, one with the ``HotPath`` middleware and one
without it, and the answers (status, headers, body) must be identical: successes, validation errors, bad
keys, odd content types, domain errors and outages from the services, idempotent replays. A second test
checks that the hot path really answers the hot routes' ordinary requests itself (else the comparison
would prove nothing).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.hot_path import HotPath, hot_routes
from services.gateway.rpc import ServiceTimeout, ServiceUnavailable
from services.gateway.settings import GatewaySettings
from shared.errors import IllegalTransition, NotFound
from tests.unit.test_gateway_problems import KEY, ORDER_ID, FakeAuth, FakeRpc, MemoryIdempotency, place_body

pytestmark = pytest.mark.unit

LINK = {"order_id": ORDER_ID, "payment_id": "card:plink_1", "link_id": "plink_1", "url": "http://x/pay/plink_1",
        "amount": "29.90", "currency": "EUR", "status": "open", "capture_method": "automatic"}


def _app(rpc: FakeRpc, *, hot: bool) -> Any:
    app = create_app(GatewaySettings(), rpc=rpc, authenticator=FakeAuth(), idempotency=MemoryIdempotency())
    if not hot:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not HotPath]
    return app


def _rpc(results: dict[str, Any]) -> FakeRpc:
    rpc = FakeRpc()
    rpc.results.update({"create_payment_link": LINK,
                        "handle_webhook": {"received": True, "duplicate": False, "event_type": "payment.captured"}})
    rpc.results.update(results)
    return rpc


@pytest.fixture()
def pair() -> Iterator[Any]:
    """``send(results, method, path, **kwargs)`` -> (answer with the hot path, answer without it)."""
    clients: list[TestClient] = []

    def send(results: dict[str, Any], method: str, path: str, **kwargs: Any) -> tuple[Any, Any]:
        answers = []
        headers = {"Authorization": f"Bearer {KEY}", "X-Request-Id": "req-1", **kwargs.pop("headers", {})}
        for hot in (True, False):
            client = TestClient(_app(_rpc(results), hot=hot), raise_server_exceptions=False)
            client.__enter__()
            clients.append(client)
            answers.append(client.request(method, path, headers=headers, follow_redirects=False, **kwargs))
        return answers[0], answers[1]

    yield send
    for client in clients:
        client.__exit__(None, None, None)


def _same(hot: Any, plain: Any) -> None:
    assert hot.status_code == plain.status_code, (hot.text, plain.text)
    assert hot.content == plain.content
    assert sorted(hot.headers.items()) == sorted(plain.headers.items())


JSON = {"Content-Type": "application/json"}
ORDER = f"/api/v1/orders/{ORDER_ID}"
CASES: list[tuple[str, dict[str, Any], str, str, dict[str, Any]]] = [
    # (name, rpc results, method, path, request kwargs)
    ("place", {}, "POST", "/api/v1/orders", {"json": place_body()}),
    ("place-invalid", {}, "POST", "/api/v1/orders", {"json": place_body(currency="EURO", shiping=1)}),
    ("place-list", {}, "POST", "/api/v1/orders", {"json": [place_body()]}),
    ("place-null", {}, "POST", "/api/v1/orders", {"content": b"null", "headers": JSON}),
    ("place-empty", {}, "POST", "/api/v1/orders", {"content": b"", "headers": JSON}),
    ("place-malformed", {}, "POST", "/api/v1/orders", {"content": b'{"channel": ', "headers": JSON}),
    ("place-no-type", {}, "POST", "/api/v1/orders", {"content": json.dumps(place_body()).encode()}),
    ("place-text", {}, "POST", "/api/v1/orders", {"content": b"{}", "headers": {"Content-Type": "text/plain"}}),
    ("place-charset", {}, "POST", "/api/v1/orders",
     {"content": b'{"channel":"web","customer":{"name":"A"},"items":[{"sku":"M","name":"M","quantity":1,'
                 b'"unit_price":"1.00"}],"currency":"EUR"}',
      "headers": {"Content-Type": "application/json; charset=utf-8"}}),
    ("place-no-key", {}, "POST", "/api/v1/orders", {"json": place_body(), "headers": {"Authorization": ""}}),
    ("place-bad-key-bad-json", {}, "POST", "/api/v1/orders",
     {"content": b"{", "headers": {**JSON, "Authorization": "Bearer nope"}}),
    ("place-bad-key-bad-body", {}, "POST", "/api/v1/orders",
     {"json": {"x": 1}, "headers": {"Authorization": "Bearer nope"}}),
    ("place-x-api-key", {}, "POST", "/api/v1/orders",
     {"json": place_body(), "headers": {"Authorization": "", "X-API-Key": KEY}}),
    ("place-idempotent", {}, "POST", "/api/v1/orders", {"json": place_body(), "headers": {"Idempotency-Key": "k1"}}),
    ("place-bad-idempotency-key", {}, "POST", "/api/v1/orders",
     {"json": place_body(), "headers": {"Idempotency-Key": "a b"}}),
    ("place-trailing-slash", {}, "POST", "/api/v1/orders/", {"json": place_body()}),
    ("place-put", {}, "PUT", "/api/v1/orders", {"json": place_body()}),
    ("get", {}, "GET", ORDER, {}),
    ("get-number", {}, "GET", "/api/v1/orders/%231001", {}),
    ("get-query", {}, "GET", f"{ORDER}?x=1", {}),
    ("get-long-ref", {}, "GET", "/api/v1/orders/" + "9" * 65, {}),
    ("get-not-found", {"get_order": NotFound("No order 1001.", order_id=ORDER_ID)}, "GET", ORDER, {}),
    ("get-down", {"get_order": ServiceUnavailable("down", headers={"Retry-After": "1"})}, "GET", ORDER, {}),
    ("get-timeout", {"get_order": ServiceTimeout("slow")}, "GET", ORDER, {}),
    ("get-broken", {"get_order": {"id": "not an order"}}, "GET", ORDER, {}),
    ("get-crash", {"get_order": RuntimeError("boom")}, "GET", ORDER, {}),
    ("get-no-key", {}, "GET", ORDER, {"headers": {"Authorization": "Bearer nope"}}),
    ("head", {}, "HEAD", ORDER, {}),
    ("note", {}, "PUT", f"{ORDER}/customer-note", {"json": {"skip": True}}),
    ("note-text", {}, "PUT", f"{ORDER}/customer-note", {"json": {"note": "  ring twice "}}),
    ("note-neither", {}, "PUT", f"{ORDER}/customer-note", {"json": {}}),
    ("note-missing", {}, "PUT", f"{ORDER}/customer-note", {}),
    ("note-conflict", {"set_customer_note": IllegalTransition("no", order_id=ORDER_ID, stage="shipped")},
     "PUT", f"{ORDER}/customer-note", {"json": {"skip": True}}),
    ("note-idempotent", {}, "PUT", f"{ORDER}/customer-note", {"json": {"skip": True},
                                                               "headers": {"Idempotency-Key": "k2"}}),
    ("link", {}, "POST", f"{ORDER}/payments/link", {"json": {}}),
    ("link-no-body", {}, "POST", f"{ORDER}/payments/link", {}),
    ("link-invalid", {}, "POST", f"{ORDER}/payments/link", {"json": {"amount": "x"}}),
    ("link-number", {}, "POST", "/api/v1/orders/1001/payments/link", {}),
    ("link-no-key", {}, "POST", f"{ORDER}/payments/link", {"headers": {"Authorization": ""}}),
    ("webhook", {}, "POST", "/api/v1/payments/webhooks/sandbox",
     {"content": b'{"type":"payment.captured"}', "headers": {**JSON, "webhook-id": "w1", "Authorization": ""}}),
    ("webhook-text", {}, "POST", "/api/v1/payments/webhooks/sandbox",
     {"content": b"not json", "headers": {"Content-Type": "text/plain"}}),
    ("webhook-rejected", {"handle_webhook": NotFound("bad signature")}, "POST", "/api/v1/payments/webhooks/sandbox",
     {"content": b"{}", "headers": JSON}),
]


@pytest.mark.parametrize(("results", "method", "path", "kwargs"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_hot_path_answers_as_fastapi_does(pair: Any, results: dict[str, Any], method: str, path: str,
                                          kwargs: dict[str, Any]) -> None:
    hot, plain = pair(results, method, path, **kwargs)
    _same(hot, plain)


def test_hot_path_answers_the_hot_routes_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ordinary request of each hot route never reaches FastAPI's router; anything else does."""
    reached: list[str] = []
    app = _app(_rpc({}), hot=True)
    original = app.router.__class__.__call__

    async def spy(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            reached.append(f"{scope['method']} {scope['path']}")
        await original(self, scope, receive, send)

    monkeypatch.setattr(app.router.__class__, "__call__", spy)
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as client:
        assert client.post("/api/v1/orders", json=place_body()).status_code == 201
        assert client.get(ORDER).status_code == 200
        assert client.put(f"{ORDER}/customer-note", json={"skip": True}).status_code == 200
        assert client.post(f"{ORDER}/payments/link").status_code == 200
        assert client.post("/api/v1/payments/webhooks/sandbox", content=b"{}", headers=JSON).status_code == 200
        assert reached == []
        assert client.post("/api/v1/orders", json={}).status_code == 422  # errors: FastAPI's own answer
        assert client.get("/api/v1/stages").status_code == 200
    assert reached == ["POST /api/v1/orders", "GET /api/v1/stages"]


def test_every_hot_route_is_a_route_of_the_app() -> None:
    """Each hot route names a declared route, and no other route of the app matches its paths first."""
    app = create_app(GatewaySettings(), rpc=FakeRpc(), authenticator=FakeAuth(), idempotency=MemoryIdempotency())
    from services.gateway.routes import ROUTERS

    routes = [route for router in ROUTERS for route in router.routes]
    for hot in hot_routes():
        sample = hot.path.replace("{ref}", str(uuid.uuid4()))
        first = next(route for route in routes
                     if hot.method in route.methods and route.path_regex.fullmatch(sample))
        assert first.endpoint is hot.endpoint, hot.path
    assert app is not None
