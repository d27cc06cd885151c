"""Every kind of problem the API returns matches the schema its OpenAPI document publishes for that answer.

The real system (orders, payments, the sandbox provider and the gateway as processes) is driven into each
kind of error an integrator can meet; each body is validated with jsonschema against the schema
``/api/v1/openapi.json`` gives for that route and status. Service failures (502, 503, 504) come from a second
gateway on a vhost of its own, where "orders" is a stand-in that fails or never answers and "payments" is
not running at all.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Servers, _create_vhost, _delete_vhost, _vhost_url
from tests.e2e.conftest import Payments, System, free_port, until
from tests.problem_schema import assert_published
from tests.processes import gateway_process

pytestmark = pytest.mark.e2e

P = "/api/v1"
ORDER = {
    "channel": "web",
    "customer": {"name": "Pia Problem", "email": "pia@example.com"},
    "items": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "12.50"}],
    "currency": "EUR",
}


def openapi(base: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{base}/openapi.json", timeout=10).json()
    return document


def place(api: httpx.Client, **changes: Any) -> dict[str, Any]:
    placed = api.post("/orders", json={**ORDER, **changes})
    assert placed.status_code == 201, placed.text
    return dict(placed.json())


def move(api: httpx.Client, ref: str, to: str) -> dict[str, Any]:
    moved = api.post(f"/orders/{ref}/transitions", json={"to": to})
    assert moved.status_code == 200, moved.text
    return dict(moved.json())


def test_every_client_error_matches_its_published_schema(payments: Payments) -> None:
    system = payments.system
    doc = openapi(system.base)
    seen: dict[tuple[int, str], dict[str, Any]] = {}

    def check(response: httpx.Response, route: str | None, method: str) -> dict[str, Any]:
        body = assert_published(doc, response, route, method)
        seen[(response.status_code, body["type"])] = body
        return body

    with payments.api() as api, httpx.Client(base_url=system.base, timeout=15) as anonymous:
        order = place(api)
        ref, number = order["id"], order["number"]

        # 401: no API key
        check(anonymous.get(f"/orders/{ref}"), f"{P}/orders/{{ref}}", "GET")
        # 404: no such order (the service says so), no such route (the gateway does), and 405
        missing = check(api.get("/orders/987654321"), f"{P}/orders/{{ref}}", "GET")
        assert missing["type"] == "urn:oms:problem:not-found"
        check(api.get("/nowhere"), None, "GET")
        check(api.delete("/orders"), None, "DELETE")

        # 409: a stage move the machine forbids; the body's numbers are numbers and null is null
        illegal = check(api.post(f"/orders/{ref}/transitions", json={"to": "shipped"}),
                        f"{P}/orders/{{ref}}/transitions", "POST")
        assert illegal["type"] == "urn:oms:problem:illegal-transition"
        assert illegal["number"] == number and isinstance(illegal["number"], int)
        assert illegal["held_from"] is None and illegal["requested"] == "shipped"
        held = move(api, ref, "on_hold")
        resumed_elsewhere = check(api.post(f"/orders/{ref}/transitions", json={"to": "approved"}),
                                  f"{P}/orders/{{ref}}/transitions", "POST")
        assert resumed_elsewhere["held_from"] == "placed" and resumed_elsewhere["stage"] == "on_hold"
        # 409: a stale expected_version
        stale = check(api.post(f"/orders/{ref}/transitions",
                               json={"to": "placed", "expected_version": held["version"] - 1}),
                      f"{P}/orders/{{ref}}/transitions", "POST")
        assert stale["type"] == "urn:oms:problem:version-conflict"
        assert (stale["expected_version"], stale["current_version"]) == (held["version"] - 1, held["version"])

        # 409: valid requests the order's state does not allow (orders: archived; payments: cancelled)
        move(api, ref, "placed")
        move(api, ref, "cancelled")
        until(lambda: api.get(f"/orders/{ref}/payments").json().get("stage") == "cancelled",
              "payments to hear of the cancellation")
        closed = check(api.post(f"/orders/{ref}/payments/link"), f"{P}/orders/{{ref}}/payments/link", "POST")
        assert closed["type"] == "urn:oms:problem:not-allowed-in-this-state" and closed["stage"] == "cancelled"
        move(api, ref, "archived")
        address = {"address": {"line1": "1 Closed Road", "city": "Berlin", "country": "DE"}}
        archived = check(api.put(f"/orders/{ref}/address", json=address), f"{P}/orders/{{ref}}/address", "PUT")
        assert archived["type"] == "urn:oms:problem:not-allowed-in-this-state" and archived["status"] == 409
        assert archived["stage"] == "archived" and archived["number"] == number
        note = check(api.post(f"/orders/{ref}/notes", json={"text": "too late"}), f"{P}/orders/{{ref}}/notes", "POST")
        assert note["type"] == archived["type"]

        # 422: the request itself is wrong: the gateway's validation, then the services' own rules
        invalid = check(api.post("/orders", json={**ORDER, "customer": None, "items": [{"sku": "X"}]}),
                        f"{P}/orders", "POST")
        assert invalid["type"] == "urn:oms:problem:validation-error"
        query = check(api.get("/orders", params={"limit": 0}), f"{P}/orders", "GET")
        assert query["errors"][0]["location"] == "query"
        other = place(api)
        until(lambda: api.get(f"/orders/{other['id']}/payments").status_code == 200, "payments to know the order")
        too_much = check(api.post(f"/orders/{other['id']}/refunds", json={"adjustment_refund": "100.00"}),
                         f"{P}/orders/{{ref}}/refunds", "POST")
        assert too_much["type"] == "urn:oms:problem:invalid-request"
        assert {(e["field"], e["location"], e["code"]) for e in too_much["errors"]} == {
            ("total", "body", "exceeds_refundable")}
        unknown = check(api.post(f"/orders/{other['id']}/refunds/paid-out", json={"reference": "no-such-refund"}),
                        f"{P}/orders/{{ref}}/refunds/paid-out", "POST")
        assert unknown["errors"] == [{"field": "reference", "location": "body", "reason": "no such manual refund",
                                      "code": "unknown_refund"}]
        yen = check(api.post("/orders", json={**ORDER, "currency": "JPY", "items": [
            {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "10.5"}]}), f"{P}/orders", "POST")
        assert [(e["field"], e["code"]) for e in yen["errors"]] == [("items[0].unit_price", "too_many_decimals")]

        # 422: an Idempotency-Key reused for another request, or malformed
        key = str(uuid.uuid4())
        assert api.post("/orders", json=ORDER, headers={"Idempotency-Key": key}).status_code == 201
        reused = check(api.post("/orders", json={**ORDER, "currency": "USD"}, headers={"Idempotency-Key": key}),
                       f"{P}/orders", "POST")
        assert reused["type"] == "urn:oms:problem:idempotency-mismatch"
        assert reused["errors"][0]["location"] == "header"
        check(api.post("/orders", json=ORDER, headers={"Idempotency-Key": "not a key"}), f"{P}/orders", "POST")

    kinds = {(status, kind.removeprefix("urn:oms:problem:")) for status, kind in seen}
    assert kinds >= {
        (401, "unauthorized"), (404, "not-found"), (405, "method-not-allowed"), (409, "illegal-transition"),
        (409, "version-conflict"), (409, "not-allowed-in-this-state"), (422, "validation-error"),
        (422, "invalid-request"), (422, "idempotency-mismatch"), (422, "invalid-idempotency-key"),
    }, kinds


# ------------------------------------------------------------------------------------------------ 5xx
@dataclass
class Lonely:
    """A gateway alone on its own vhost: ``orders`` is ``StandIn``, ``payments`` does not run."""

    base: str
    headers: dict[str, str]


class StandIn(threading.Thread):
    """The ``orders`` RPC queue served by a stand-in: ``get_order`` fails with a plain exception (not a
    domain error: 502), every other call is taken and never answered (504)."""

    def __init__(self, amqp_url: str) -> None:
        super().__init__(daemon=True, name="orders-stand-in")
        import pika

        self.conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self.ch = self.conn.channel()
        self.ch.exchange_declare("nameko-rpc", "topic", durable=True)
        self.ch.queue_declare("rpc-orders", durable=True)
        self.ch.queue_bind("rpc-orders", "nameko-rpc", routing_key="orders.*")
        self.ch.basic_consume("rpc-orders", self.on_call)
        self.stopping = threading.Event()

    def on_call(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        import pika

        ch.basic_ack(method.delivery_tag)
        if method.routing_key != "orders.get_order":
            return
        error = {"exc_type": "KeyError", "exc_path": "builtins.KeyError", "exc_args": ["db-password"],
                 "value": "'db-password'"}
        ch.basic_publish("nameko-rpc", props.reply_to, json.dumps({"result": None, "error": error}),
                         pika.BasicProperties(correlation_id=props.correlation_id, content_type="application/json"))

    def run(self) -> None:
        while not self.stopping.is_set():
            self.conn.process_data_events(time_limit=0.2)
        self.conn.close()


@pytest.fixture()
def lonely(system: System, servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lonely]:
    vhost = f"{servers.vhost}_lonely"
    _create_vhost(servers.amqp_base_url, vhost)
    amqp_url = _vhost_url(servers.amqp_base_url, vhost)
    stand_in = StandIn(amqp_url)
    stand_in.start()
    port = free_port()
    env = {**system.env, "OMS_AMQP_URL": amqp_url, "OMS_HTTP_PORT": str(port), "OMS_RPC_TIMEOUT_SECONDS": "1"}
    try:
        with gateway_process(env, tmp_path_factory.mktemp("lonely-gateway")):
            yield Lonely(f"http://127.0.0.1:{port}{P}", system.headers)
    finally:
        stand_in.stopping.set()
        stand_in.join(timeout=5)
        _delete_vhost(servers.amqp_base_url, vhost)


def test_service_failures_match_their_published_schema(lonely: Lonely) -> None:
    doc = openapi(lonely.base)
    with httpx.Client(base_url=lonely.base, headers=lonely.headers, timeout=15) as api:
        failed = assert_published(doc, api.get("/orders/1001"), f"{P}/orders/{{ref}}", "GET")
        assert failed["status"] == 502 and "db-password" not in json.dumps(failed)
        late = assert_published(doc, api.get("/orders"), f"{P}/orders", "GET")
        assert late["status"] == 504 and "1s" in late["detail"]
        down = assert_published(doc, api.get("/payments/manual-refunds"), f"{P}/payments/manual-refunds", "GET")
        assert down["status"] == 503 and "payments" in down["detail"]
