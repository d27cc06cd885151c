"""The gateway's error mapping and routing, with the RPC client, API keys and idempotency store replaced by
in-process stand-ins (no servers). Wire compatibility and the real stores are in tests/integration."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.auth import Principal, key_from_headers, parse_prefix
from services.gateway.idempotency import StoredResponse, request_hash
from services.gateway.problems import Unauthorized, field_path
from services.gateway.rpc import (
    RemoteServiceError,
    ServiceTimeout,
    ServiceUnavailable,
    decode_body,
    encode_request,
    rebuild_error,
)
from services.gateway.settings import GatewaySettings
from shared.errors import DomainError, IllegalTransition, NotFound, VersionConflict
from tests.fakes import answer_place_orders

pytestmark = pytest.mark.unit

KEY = "oms_abcd1234_" + "x" * 40
PRINCIPAL = Principal(id=uuid.UUID("00000000-0000-4000-8000-000000000001"), name="unit tests", prefix="abcd1234")
ORDER_ID = "6f1c1f55-3a2b-4c8e-9a51-0d0c1b2a3f4e"


def order_detail(**overrides: Any) -> dict[str, Any]:
    actor = {"type": "staff", "id": str(PRINCIPAL.id), "name": PRINCIPAL.name}
    detail = {
        "id": ORDER_ID,
        "number": 1001,
        "display_number": "#1001",
        "channel": "web",
        "stage": "placed",
        "customer": {"name": "Ada Lovelace", "phone": "+44 20 7946 0000", "email": "ada@example.com"},
        "currency": "EUR",
        "totals": {"subtotal": "25.00", "shipping": "4.90", "discount": "0.00", "tax": "0.00", "total": "29.90"},
        "item_count": 2,
        "placed_at": "2024-05-01T10:00:00+00:00",
        "updated_at": "2024-05-01T10:00:00+00:00",
        "version": 1,
        "items": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "12.50", "line_total": "25.00"}],
        "history": [{"seq": 1, "at": "2024-05-01T10:00:00+00:00", "actor": actor, "action": "placed"}],
        "allowed_transitions": ["confirmed", "cancelled"],
    }
    detail.update(overrides)
    return detail


class FakeRpc:
    """Records calls; answers with ``results[method]`` (an exception is raised)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = []
        self.results: dict[str, Any] = {}
        self.connected = True

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if method == "place_orders":  # the gateway batches placements
            return await answer_place_orders(functools.partial(self.call, service, "place_order"), kwargs["requests"])
        self.calls.append((service, method, args, kwargs))
        result = self.results.get(method, order_detail())
        if isinstance(result, BaseException):
            raise result
        return result


class FakeAuth:
    async def authenticate(self, plaintext: str) -> Principal:
        if plaintext != KEY:
            raise Unauthorized("The API key is not valid.")
        return PRINCIPAL


class MemoryIdempotency:
    def __init__(self) -> None:
        self.rows: dict[tuple[uuid.UUID, str], tuple[str, StoredResponse | None]] = {}

    async def begin(self, api_key_id: uuid.UUID, key: str, method: str, path: str, fingerprint: str) -> Any:
        row = self.rows.get((api_key_id, key))
        if row is None:
            self.rows[(api_key_id, key)] = (fingerprint, None)
            return None
        return row[1]

    async def finish(self, api_key_id: uuid.UUID, key: str, response: StoredResponse) -> None:
        self.rows[(api_key_id, key)] = (self.rows[(api_key_id, key)][0], response)

    async def abandon(self, api_key_id: uuid.UUID, key: str) -> None:
        self.rows.pop((api_key_id, key), None)


@pytest.fixture()
def rpc() -> FakeRpc:
    return FakeRpc()


@pytest.fixture()
def client(rpc: FakeRpc) -> Iterator[TestClient]:
    app = create_app(GatewaySettings(), rpc=rpc, authenticator=FakeAuth(), idempotency=MemoryIdempotency())
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def place_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "web",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "items": [{"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "12.50"}],
        "currency": "EUR",
    }
    body.update(overrides)
    return body


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:oms:problem:")
    assert body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


# ------------------------------------------------------------------------------------------ validation
def test_validation_error_names_each_field(client: TestClient, rpc: FakeRpc) -> None:
    body = place_body(items=[{"sku": "MUG", "name": "Mug", "quantity": 0, "unit_price": 12.5}])
    del body["customer"]
    problem = assert_problem(client.post("/api/v1/orders", json=body), 422)
    fields = {e["field"]: e for e in problem["errors"]}
    assert set(fields) == {"customer", "items[0].quantity", "items[0].unit_price"}
    assert fields["items[0].quantity"]["location"] == "body"
    assert fields["items[0].quantity"]["code"] == "greater_than"
    assert "float" in fields["items[0].unit_price"]["reason"]
    assert "items[0].quantity" in problem["detail"]
    assert problem["type"] == "urn:oms:problem:validation-error"
    assert rpc.calls == []


def test_unknown_field_and_model_level_error(client: TestClient) -> None:
    problem = assert_problem(client.post("/api/v1/orders", json=place_body(shiping="1")), 422)
    assert [e["field"] for e in problem["errors"]] == ["shiping"]
    problem = assert_problem(client.put("/api/v1/orders/1001/customer-note", json={}), 422)
    assert problem["errors"][0]["field"] == ""
    assert problem["errors"][0]["reason"].startswith("give either a note")


def test_malformed_json(client: TestClient) -> None:
    response = client.post("/api/v1/orders", content=b'{"channel": ', headers={"Content-Type": "application/json"})
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["reason"].startswith("Invalid JSON")


def test_query_validation_names_the_repeated_parameter(client: TestClient) -> None:
    problem = assert_problem(client.get("/api/v1/orders?stage=placed&stage=flying&limit=0"), 422)
    assert {(e["field"], e["location"]) for e in problem["errors"]} == {("stage[1]", "query"), ("limit", "query")}


def test_field_path() -> None:
    assert field_path(("body", "items", 0, "quantity")) == "items[0].quantity"
    assert field_path(("query", "stage", 2)) == "stage[2]"
    assert field_path(("body",)) == ""


# ------------------------------------------------------------------------------------------ auth, routing
def test_missing_and_bad_keys_are_401(client: TestClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}):
        problem = assert_problem(client.get("/api/v1/orders/1001", headers=headers), 401)
        assert problem["type"] == "urn:oms:problem:unauthorized"
    response = client.get("/api/v1/orders/1001", headers={"Authorization": "", "X-API-Key": KEY})
    assert response.status_code == 200
    assert client.get("/api/v1/orders/1001", headers={"Authorization": ""}).headers["www-authenticate"].startswith(
        "Bearer"
    )


def test_key_from_headers() -> None:
    assert key_from_headers("Bearer abc", None) == "abc"
    assert key_from_headers("bearer  abc ", None) == "abc"
    assert key_from_headers(None, "abc") == "abc"
    with pytest.raises(Unauthorized):
        key_from_headers(None, None)
    assert parse_prefix(KEY) == "abcd1234"
    assert parse_prefix("oms_ABCD1234_" + "x" * 40) is None


def test_unknown_route_and_method(client: TestClient) -> None:
    problem = assert_problem(client.get("/api/v1/nothing-here"), 404)
    assert problem["instance"] == "/api/v1/nothing-here"
    response = client.delete("/api/v1/orders")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


def test_public_routes_need_no_key(client: TestClient) -> None:
    anonymous = {"Authorization": ""}
    assert client.get("/api/v1/health", headers=anonymous).json() == {"status": "ok", "checks": {"broker": "ok"}}
    assert client.get("/api/v1/openapi.json", headers=anonymous).status_code == 200
    assert client.get("/api/v1/docs", headers=anonymous).status_code == 200


def test_health_reports_broker_down(client: TestClient, rpc: FakeRpc) -> None:
    rpc.connected = False
    problem = assert_problem(client.get("/api/v1/health"), 503)
    assert problem["checks"] == {"broker": "unreachable"}


def test_request_id_is_echoed_and_forwarded(client: TestClient) -> None:
    response = client.get("/api/v1/nothing", headers={"X-Request-Id": "req-123"})
    assert response.headers["x-request-id"] == "req-123"
    assert response.json()["request_id"] == "req-123"
    weird = client.get("/api/v1/nothing", headers={"X-Request-Id": "a b\tc"})
    assert weird.headers["x-request-id"] != "a b\tc"


# ------------------------------------------------------------------------------------------ service errors
def test_domain_errors_become_problems_with_their_extra_fields(client: TestClient, rpc: FakeRpc) -> None:
    rpc.results["transition"] = IllegalTransition(
        "Order #1001 is shipped and cannot move to placed.", order_id=ORDER_ID, stage="shipped",
        allowed=["delivered", "returned"],
    )
    problem = assert_problem(client.post("/api/v1/orders/1001/transitions", json={"to": "placed"}), 409)
    assert problem["type"] == "urn:oms:problem:illegal-transition"
    assert problem["title"] == "Illegal transition"
    assert problem["detail"] == "Order #1001 is shipped and cannot move to placed."
    assert problem["allowed"] == ["delivered", "returned"]
    assert problem["stage"] == "shipped"
    assert problem["instance"] == "/api/v1/orders/1001/transitions"

    rpc.results["get_order"] = NotFound("No order 9999.", ref="9999")
    assert assert_problem(client.get("/api/v1/orders/9999"), 404)["ref"] == "9999"
    rpc.results["set_address"] = VersionConflict("stale", type="evil", expected=1, actual=2)
    body = {"address": {"line1": "1 Main St", "city": "Paris", "country": "fr"}, "expected_version": 1}
    problem = assert_problem(client.put("/api/v1/orders/1001/address", json=body), 409)
    assert problem["type"] == "urn:oms:problem:version-conflict"  # extra cannot override reserved members
    assert rpc.calls[-1][3]["command"]["address"]["country"] == "FR"


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        (ServiceUnavailable("The message broker is unreachable."), 503, "service-unavailable"),
        (ServiceTimeout("The orders service did not answer within 10s."), 504, "service-timeout"),
        (RemoteServiceError("The orders service failed while handling get_order."), 502, "service-error"),
    ],
)
def test_transport_errors(client: TestClient, rpc: FakeRpc, error: Exception, status: int, slug: str) -> None:
    rpc.results["get_order"] = error
    problem = assert_problem(client.get("/api/v1/orders/1001"), status)
    assert problem["type"] == f"urn:oms:problem:{slug}"


def test_unexpected_exception_is_a_500_without_traceback(client: TestClient, rpc: FakeRpc) -> None:
    rpc.results["get_order"] = RuntimeError("password=hunter2 in a stack frame")
    response = client.get("/api/v1/orders/1001", headers={"X-Request-Id": "boom-1"})
    problem = assert_problem(response, 500)
    assert "hunter2" not in response.text
    assert "boom-1" in problem["detail"]


def test_malformed_service_result_is_502(client: TestClient, rpc: FakeRpc) -> None:
    rpc.results["get_order"] = {"id": "not a uuid"}
    assert_problem(client.get("/api/v1/orders/1001"), 502)


def test_rebuild_error_from_nameko_payload() -> None:
    exc = rebuild_error(
        {"exc_type": "NotFound", "exc_path": "shared.errors.NotFound",
         "exc_args": ["No order #1001.", {"order_ref": "1001", "detail": "x"}], "value": "No order #1001."},
        "orders", "get_order",
    )
    assert isinstance(exc, NotFound)
    assert exc.detail == "No order #1001." and exc.extra == {"order_ref": "1001"}
    other = rebuild_error({"exc_type": "KeyError", "exc_args": ["secret"], "value": "'secret'"}, "orders", "x")
    assert isinstance(other, RemoteServiceError) and "secret" not in str(other.detail)


def test_an_error_class_the_gateway_never_imported_is_answered_from_its_payload() -> None:
    exc = rebuild_error(
        {"exc_type": "CardDeclined", "exc_path": "services.somewhere.CardDeclined",
         "exc_args": ["The card was declined.", {"order_id": ORDER_ID},
                      {"type": "urn:oms:problem:card-declined", "title": "Card declined", "status": "402",
                       "kinds": ["urn:oms:problem:card-declined", "urn:oms:problem:domain-error"]}],
         "value": "The card was declined."},
        "payments", "create_payment_link",
    )
    assert isinstance(exc, DomainError)
    assert (exc.type, exc.title, exc.status, exc.detail) == (
        "urn:oms:problem:card-declined", "Card declined", 402, "The card was declined.")
    assert exc.extra == {"order_id": ORDER_ID}


def test_kombu_json_envelopes_are_decoded() -> None:
    body = decode_body(
        b'{"result": {"total": {"__type__": "decimal", "__value__": "12.50"},'
        b' "at": {"__type__": "datetime", "__value__": "2024-05-01T10:00:00+00:00"},'
        b' "id": {"__type__": "uuid", "__value__": {"hex": "6f1c1f553a2b4c8e9a510d0c1b2a3f4e"}}}, "error": null}'
    )
    assert str(body["result"]["total"]) == "12.50"
    assert body["result"]["at"].year == 2024
    assert str(body["result"]["id"]) == ORDER_ID
    assert encode_request(("a",), {"b": 1}) == b'{"args":["a"],"kwargs":{"b":1}}'


# ------------------------------------------------------------------------------------------ routes -> RPC
def test_place_order_call_and_answer(client: TestClient, rpc: FakeRpc) -> None:
    response = client.post("/api/v1/orders", json=place_body())
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/api/v1/orders/{ORDER_ID}"
    assert response.json()["totals"]["total"] == "29.90"
    service, method, args, kwargs = rpc.calls[-1]
    assert (service, method, args) == ("orders", "place_order", ())
    assert kwargs["actor"] == {"type": "staff", "id": str(PRINCIPAL.id), "name": "unit tests"}
    assert kwargs["idempotency_key"] is None
    assert kwargs["command"]["items"][0]["unit_price"] == "12.50"


def test_idempotent_replay_uses_the_stored_answer(client: TestClient, rpc: FakeRpc) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = client.post("/api/v1/orders", json=place_body(), headers=headers)
    second = client.post("/api/v1/orders", json=place_body(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["location"] == first.headers["location"]
    assert len(rpc.calls) == 1
    assert rpc.calls[0][3]["idempotency_key"] == "k-1"
    problem = assert_problem(client.post("/api/v1/orders", json=place_body(), headers={"Idempotency-Key": "a b"}), 422)
    assert problem["type"] == "urn:oms:problem:invalid-idempotency-key"


def test_list_orders_passes_the_query(client: TestClient, rpc: FakeRpc) -> None:
    rpc.results["list_orders"] = {"items": [], "next_cursor": None}
    response = client.get("/api/v1/orders?stage=placed&stage=confirmed&channel=web&q=%231001&limit=10")
    assert response.status_code == 200, response.text
    query = rpc.calls[-1][3]["query"]
    assert query["stage"] == ["placed", "confirmed"] and query["channel"] == ["web"]
    assert query["q"] == "#1001" and query["limit"] == 10


def test_order_refs(client: TestClient, rpc: FakeRpc) -> None:
    for path, ref in (("1001", "1001"), ("%231001", "#1001"), (ORDER_ID, ORDER_ID)):
        assert client.get(f"/api/v1/orders/{path}").status_code == 200
        assert rpc.calls[-1][1:] == ("get_order", (), {"ref": ref})


def test_note_routes(client: TestClient, rpc: FakeRpc) -> None:
    note_id = str(uuid.uuid4())
    assert client.post("/api/v1/orders/1001/notes", json={"text": "call back"}).status_code == 200
    assert rpc.calls[-1][1] == "add_note" and rpc.calls[-1][3]["command"] == {"text": "call back"}
    assert client.patch(f"/api/v1/orders/1001/notes/{note_id}", json={"text": "done"}).status_code == 200
    assert rpc.calls[-1][1] == "edit_note" and rpc.calls[-1][3]["note_id"] == note_id
    assert client.delete(f"/api/v1/orders/1001/notes/{note_id}").status_code == 200
    assert rpc.calls[-1][1] == "delete_note" and set(rpc.calls[-1][3]) == {"ref", "note_id", "actor"}
    assert_problem(client.delete("/api/v1/orders/1001/notes/not-a-uuid"), 422)


def test_test_order_without_body(client: TestClient, rpc: FakeRpc) -> None:
    assert client.post("/api/v1/test-orders").status_code == 201
    command = rpc.calls[-1][3]["command"]
    assert command["test"] is True and command["channel"] == "test" and command["items"]
    assert client.post("/api/v1/test-orders", json={"payment_method": None, "currency": "usd"}).status_code == 201
    command = rpc.calls[-1][3]["command"]
    assert command["payment_method"] is None and command["currency"] == "USD"


def test_stages_table(client: TestClient) -> None:
    table = client.get("/api/v1/stages").json()
    assert {row["stage"] for row in table["stages"]} >= {"placed", "confirmed", "shipped"}


def test_openapi_declares_problem_responses(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    post = doc["paths"]["/api/v1/orders"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PlaceOrder")
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/OrderDetail")
    assert post["responses"]["422"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/ValidationProblem"}}
    }
    assert post["responses"]["401"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert {"bearer", "apiKey"} <= set(doc["components"]["securitySchemes"])
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert "security" not in doc["paths"]["/api/v1/health"]["get"]


def test_request_hash_is_canonical() -> None:
    assert request_hash("POST", "/x", {"a": 1, "b": 2}) == request_hash("post", "/x", {"b": 2, "a": 1})
    assert request_hash("POST", "/x", {"a": 1}) != request_hash("POST", "/y", {"a": 1})


def test_errors_entries_built_by_hand_reach_the_client_complete(client: TestClient, rpc: FakeRpc) -> None:
    """An ``errors`` entry a sender built without ``location``/``code`` still matches the published
    ``FieldError`` (every member present), and one built with ``field_error`` arrives as it was."""
    from shared.errors import InvalidRequest, field_error

    rpc.results["list_orders"] = InvalidRequest("Bad cursor.", errors=[
        {"field": "cursor", "reason": "malformed cursor"},
        field_error("limit", "too many", "too_many", "query"),
    ])
    problem = assert_problem(client.get("/api/v1/orders"), 422)
    assert problem["errors"] == [
        {"field": "cursor", "location": "body", "reason": "malformed cursor", "code": "invalid"},
        {"field": "limit", "location": "query", "reason": "too many", "code": "too_many"},
    ]
