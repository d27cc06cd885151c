"""The fulfillment routes of the gateway with the RPC client replaced by an in-process stand-in (no servers):
which fulfillment RPC each route makes with which arguments, order numbers resolved through orders, the
catch-up wait, idempotency of label purchases, documents as files, the public carrier webhook, and every RPC
of the fulfillment contract reachable over HTTP. The service's behaviour itself is tested over HTTP in
tests/e2e/test_fulfillment_over_http.py."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.fulfillment.contracts import schemas
from services.fulfillment.contracts.sandbox import SIGNATURE_HEADER, WEBHOOK_PATH
from services.fulfillment.contracts.vocabulary import status_tables
from services.gateway.app import create_app
from services.gateway.routes import fulfillment as routes
from services.gateway.settings import GatewaySettings
from shared.errors import NotAllowedInThisState, NotFound
from tests.unit.test_gateway_problems import (
    KEY,
    ORDER_ID,
    PRINCIPAL,
    FakeAuth,
    FakeRpc,
    MemoryIdempotency,
    assert_problem,
)

pytestmark = pytest.mark.unit

P = "/api/v1"
SHIPMENT_ID = "0b7d3c52-9a39-4d52-8f4e-3c1e6f0a9b11"
AT = "2024-05-01T10:00:00+00:00"
ACTOR = {"type": "staff", "id": str(PRINCIPAL.id), "name": PRINCIPAL.name}


def shipment_view(**overrides: Any) -> dict[str, Any]:
    view = {
        "id": SHIPMENT_ID, "order_id": ORDER_ID, "order_number": 1001, "number": "1001-S1", "kind": "manual",
        "shipping_point": "local", "status": "awaiting_shipment", "location": "main",
        "lines": [{"line_id": "1", "sku": "MUG", "name": "Mug", "quantity": 2}],
        "allowed_statuses": ["shipped", "delivered"], "can_edit": True, "can_cancel": True,
        "can_mark_delivered": True, "created_at": AT, "updated_at": AT,
    }
    view.update(overrides)
    return view


def fulfillment_view() -> dict[str, Any]:
    return {
        "order_id": ORDER_ID, "order_number": 1001, "order_stage": "approved", "status": "unfulfilled",
        "packed": False, "can_fulfill": True, "reservation": "reserved",
        "lines": [{"line_id": "1", "sku": "MUG", "name": "Mug", "ordered": 2, "in_open_shipments": 0,
                   "handed_over": 0, "delivered": 0, "returned": 0, "unfulfilled": 2, "returnable": 0,
                   "stock_tracked": True, "reserved": 2}],
        "shipments": [], "returns": [],
    }


def stock_item(sku: str = "MUG") -> dict[str, Any]:
    return {"sku": sku, "on_hand": 5, "reserved": 2, "available": 3,
            "locations": [{"location": "main", "on_hand": 5, "reserved": 2, "available": 3, "updated_at": AT}]}


PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3 fake pdf bytes\n%%EOF"
RESULTS: dict[str, Any] = {
    "get_fulfillment": fulfillment_view(),
    "mark_packed": {**fulfillment_view(), "packed": True, "status": "dispatched"},
    "retry_reservation": fulfillment_view(),
    "create_shipment": shipment_view(),
    "carrier_rates": {"rates": [{"rate_id": "r1", "carrier": "Sandbox Express", "service": "ground",
                                 "amount": "7.50", "currency": "EUR", "estimated_delivery": "2024-05-04"}]},
    "buy_label": shipment_view(kind="carrier", tracking_number="SBX123", label_available=True, can_edit=False,
                               allowed_statuses=[]),
    "get_shipment": shipment_view(),
    "edit_shipment": shipment_view(carrier="DHL"),
    "mark_delivered": shipment_view(status="delivered"),
    "cancel_shipment": shipment_view(status="canceled"),
    "shipment_label": {"filename": "label-SBX123.pdf", "content_type": "application/pdf", "encoding": "base64",
                       "content": base64.b64encode(PDF).decode()},
    "record_return": {"id": str(uuid.uuid4()), "order_id": ORDER_ID, "actor": ACTOR, "at": AT,
                      "lines": [{"line": "1", "quantity": 1, "restock": True, "location": "main"}]},
    "list_stock": {"items": [stock_item("MUG-XL"), stock_item("MUG")]},
    "set_stock": stock_item(),
    "adjust_stock": stock_item(),
    "stock_movements": {"items": []},
    "reconcile_stock": {"checked": 3, "drift": [], "fixed": False},
    "render_document": {"filename": "INV-000001.pdf", "content_type": "application/pdf", "encoding": "base64",
                        "content": base64.b64encode(PDF).decode()},
    "render_packing_slips": {"filename": "packing-slips-1.pdf", "content_type": "application/pdf",
                             "encoding": "base64", "content": base64.b64encode(PDF).decode()},
    "handle_carrier_webhook": {"received": True, "applied": True},
}


@pytest.fixture()
def rpc() -> FakeRpc:
    fake = FakeRpc()
    fake.results.update(RESULTS)
    return fake


@pytest.fixture()
def client(rpc: FakeRpc) -> Iterator[TestClient]:
    app = create_app(GatewaySettings(), rpc=rpc, authenticator=FakeAuth(), idempotency=MemoryIdempotency())
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def fulfillment_calls(rpc: FakeRpc) -> list[tuple[str, dict[str, Any]]]:
    return [(method, kwargs) for service, method, _args, kwargs in rpc.calls if service == "fulfillment"]


# ------------------------------------------------------------------------------------------ orders by ref
def test_an_order_number_is_resolved_through_orders(client: TestClient, rpc: FakeRpc) -> None:
    for ref in ("1001", "%231001"):
        rpc.calls.clear()
        response = client.get(f"{P}/orders/{ref}/fulfillment")
        assert response.status_code == 200, response.text
        assert response.json()["lines"][0]["unfulfilled"] == 2
        assert [(s, m) for s, m, _a, _k in rpc.calls] == [("orders", "get_order"), ("fulfillment", "get_fulfillment")]
        assert rpc.calls[0][3] == {"ref": ref.replace("%23", "#")}
        assert rpc.calls[1][3] == {"order_id": ORDER_ID}


def test_an_order_id_goes_straight_to_fulfillment(client: TestClient, rpc: FakeRpc) -> None:
    assert client.get(f"{P}/orders/{ORDER_ID}/fulfillment").status_code == 200
    assert [(s, m) for s, m, _a, _k in rpc.calls] == [("fulfillment", "get_fulfillment")]


def test_an_order_nobody_placed_is_404(client: TestClient, rpc: FakeRpc) -> None:
    rpc.results["get_order"] = NotFound("Order #999 does not exist.", ref="999")
    problem = assert_problem(client.post(f"{P}/orders/999/shipments", json={}), 404)
    assert problem["detail"] == "Order #999 does not exist."
    assert fulfillment_calls(rpc) == []


class Lagging(FakeRpc):
    """Fulfillment has not heard of the order for its first ``misses`` calls."""

    def __init__(self, misses: int) -> None:
        super().__init__()
        self.results.update(RESULTS)
        self.misses = misses

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if service == "fulfillment" and self.misses > 0:
            self.misses -= 1
            self.calls.append((service, method, args, kwargs))
            raise NotFound(f"Order {ORDER_ID} is not known.", order_id=ORDER_ID)
        return await super().call(service, method, *args, timeout=timeout, **kwargs)


def _lagging_client(rpc: FakeRpc) -> TestClient:
    app = create_app(GatewaySettings(), rpc=rpc, authenticator=FakeAuth(), idempotency=MemoryIdempotency())
    return TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {KEY}"})


def test_a_just_placed_order_is_waited_for_then_503(monkeypatch: pytest.MonkeyPatch) -> None:
    rpc = Lagging(misses=2)
    with _lagging_client(rpc) as client:
        response = client.get(f"{P}/orders/{ORDER_ID}/fulfillment")
    assert response.status_code == 200, response.text
    assert [m for _s, m, _a, _k in rpc.calls] == ["get_fulfillment", "get_order", "get_fulfillment",
                                                  "get_fulfillment"]

    monkeypatch.setattr(routes, "FULFILLMENT_CATCH_UP_SECONDS", 0.05)
    with _lagging_client(Lagging(misses=10_000)) as client:
        problem = assert_problem(client.get(f"{P}/orders/{ORDER_ID}/fulfillment"), 503)
    assert problem["order_id"] == ORDER_ID
    assert "caught up" in problem["detail"]


def test_not_found_about_something_else_is_not_waited_for(client: TestClient, rpc: FakeRpc) -> None:
    rpc.results["get_shipment"] = NotFound("No shipment 0b7d….", shipment_id=SHIPMENT_ID)
    assert_problem(client.get(f"{P}/shipments/{SHIPMENT_ID}"), 404)
    assert len(fulfillment_calls(rpc)) == 1


# ------------------------------------------------------------------------------------------ commands
def test_manual_fulfill_creates_a_shipment(client: TestClient, rpc: FakeRpc) -> None:
    body = {"lines": [{"line": "MUG", "quantity": 1}], "shipping_point": "pickup"}
    response = client.post(f"{P}/orders/{ORDER_ID}/shipments", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{P}/shipments/{SHIPMENT_ID}"
    ((method, kwargs),) = fulfillment_calls(rpc)
    assert method == "create_shipment"
    assert kwargs["order_id"] == ORDER_ID and kwargs["actor"] == ACTOR
    assert kwargs["command"]["lines"] == [{"line": "MUG", "quantity": 1}]
    assert kwargs["command"]["shipping_point"] == "pickup" and kwargs["command"]["location"] == "main"
    # No body: every unit still unfulfilled.
    assert client.post(f"{P}/orders/{ORDER_ID}/shipments").status_code == 201
    assert fulfillment_calls(rpc)[-1][1]["command"]["lines"] == []


def test_international_without_tracking_is_refused_before_any_call(client: TestClient, rpc: FakeRpc) -> None:
    problem = assert_problem(client.post(f"{P}/orders/{ORDER_ID}/shipments",
                                         json={"shipping_point": "international", "carrier": "DHL"}), 422)
    assert "tracking_number" in problem["errors"][0]["reason"]
    assert rpc.calls == []


def test_a_label_is_bought_once_per_idempotency_key(client: TestClient, rpc: FakeRpc) -> None:
    body = {"rate_id": "r1", "packages": [{"preset": "small_box", "weight_grams": 500}]}
    headers = {"Idempotency-Key": "label-1"}
    first = client.post(f"{P}/orders/{ORDER_ID}/shipments/label", json=body, headers=headers)
    again = client.post(f"{P}/orders/{ORDER_ID}/shipments/label", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    ((method, kwargs),) = fulfillment_calls(rpc)
    assert method == "buy_label"
    assert kwargs["idempotency_key"] == f"{PRINCIPAL.id}:label-1"  # scoped by the caller
    assert kwargs["command"]["rate_id"] == "r1"


def test_rates_change_nothing_and_need_packages(client: TestClient, rpc: FakeRpc) -> None:
    assert_problem(client.post(f"{P}/orders/{ORDER_ID}/shipments/rates", json={"packages": []}), 422)
    response = client.post(f"{P}/orders/{ORDER_ID}/shipments/rates",
                           json={"packages": [{"weight_grams": 800, "length_cm": 20, "width_cm": 10, "height_cm": 5}],
                                 "signature_confirmation": True})
    assert response.status_code == 200, response.text
    assert response.json()["rates"][0]["amount"] == "7.50"
    ((method, kwargs),) = fulfillment_calls(rpc)
    assert method == "carrier_rates" and "actor" not in kwargs
    assert kwargs["command"]["signature_confirmation"] is True


def test_edit_sends_only_the_fields_given(client: TestClient, rpc: FakeRpc) -> None:
    response = client.patch(f"{P}/shipments/{SHIPMENT_ID}", json={"carrier": "DHL", "status": "shipped"})
    assert response.status_code == 200, response.text
    ((method, kwargs),) = fulfillment_calls(rpc)
    assert method == "edit_shipment" and kwargs["shipment_id"] == SHIPMENT_ID
    assert kwargs["command"] == {"carrier": "DHL", "status": "shipped"}
    assert_problem(client.patch(f"{P}/shipments/{SHIPMENT_ID}", json={"status": "lost"}), 422)
    assert_problem(client.patch(f"{P}/shipments/not-an-id", json={}), 422)


def test_a_carrier_shipment_refusing_an_edit_is_a_409_naming_the_field(client: TestClient, rpc: FakeRpc) -> None:
    rpc.results["edit_shipment"] = NotAllowedInThisState(
        "A carrier shipment is moved by the carrier's tracking only.", shipment_id=SHIPMENT_ID, field="status")
    problem = assert_problem(client.patch(f"{P}/shipments/{SHIPMENT_ID}", json={"status": "delivered"}), 409)
    assert problem["field"] == "status" and problem["shipment_id"] == SHIPMENT_ID


def test_shipment_moves_and_returns(client: TestClient, rpc: FakeRpc) -> None:
    assert client.post(f"{P}/shipments/{SHIPMENT_ID}/deliver").json()["status"] == "delivered"
    assert client.post(f"{P}/shipments/{SHIPMENT_ID}/cancel", json={"reason": "customer asked"}).status_code == 200
    returned = client.post(f"{P}/orders/{ORDER_ID}/returns",
                           json={"lines": [{"line": "1", "quantity": 1, "restock": True}], "reason": "too small"})
    assert returned.status_code == 201, returned.text
    calls = fulfillment_calls(rpc)
    assert [m for m, _k in calls] == ["mark_delivered", "cancel_shipment", "record_return"]
    assert calls[0][1]["command"] == {"notify_customer": True}
    assert calls[1][1]["command"] == {"reason": "customer asked"}
    assert calls[2][1]["command"]["lines"] == [{"line": "1", "quantity": 1, "restock": True, "location": "main"}]
    assert all(k["actor"] == ACTOR for _m, k in calls)
    assert_problem(client.post(f"{P}/orders/{ORDER_ID}/returns", json={"lines": []}), 422)


def test_mutations_need_an_api_key(client: TestClient, rpc: FakeRpc) -> None:
    anonymous = {"Authorization": ""}
    for method, path in (("POST", f"/orders/{ORDER_ID}/fulfillment/pack"), ("PUT", "/stock/MUG"),
                         ("POST", f"/shipments/{SHIPMENT_ID}/cancel"), ("GET", "/stock"),
                         ("GET", "/fulfillment/statuses"), ("GET", f"/orders/{ORDER_ID}/invoice.pdf")):
        assert_problem(client.request(method, P + path, headers=anonymous, json={}), 401)
    assert rpc.calls == []


# ------------------------------------------------------------------------------------------ documents
def test_a_pdf_document_is_sent_as_a_file(client: TestClient, rpc: FakeRpc) -> None:
    response = client.get(f"{P}/orders/1001/invoice.pdf")
    assert response.status_code == 200, response.text
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == 'inline; filename="INV-000001.pdf"'
    assert fulfillment_calls(rpc) == [("render_document", {"kind": "invoice", "ref": ORDER_ID, "fmt": "pdf"})]


def test_an_html_document_and_a_packing_slip(client: TestClient, rpc: FakeRpc) -> None:
    rpc.results["render_document"] = {"filename": 'PS-1001-S1".html', "content_type": "text/html",
                                      "encoding": "text", "content": "<h1>Packing slip PS-1001-S1 – 2 × Mug</h1>"}
    response = client.get(f"{P}/shipments/{SHIPMENT_ID}/packing-slip.html")
    assert response.status_code == 200, response.text
    assert response.text == "<h1>Packing slip PS-1001-S1 – 2 × Mug</h1>"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-disposition"] == 'inline; filename="PS-1001-S1_.html"'  # no quote injected
    assert fulfillment_calls(rpc) == [("render_document", {"kind": "packing_slip", "ref": SHIPMENT_ID,
                                                           "fmt": "html"})]
    assert client.get(f"{P}/orders/{ORDER_ID}/details.html").status_code == 200
    assert fulfillment_calls(rpc)[-1][1]["kind"] == "order_details"


def test_document_formats_and_broken_documents(client: TestClient, rpc: FakeRpc) -> None:
    assert_problem(client.get(f"{P}/orders/{ORDER_ID}/invoice.docx"), 422)
    assert client.get(f"{P}/shipments/{SHIPMENT_ID}/label.pdf").content == PDF
    rpc.results["render_document"] = {**RESULTS["render_document"], "content": "not base64!"}
    assert_problem(client.get(f"{P}/orders/{ORDER_ID}/invoice.pdf"), 502)


# ------------------------------------------------------------------------------------------ stock
def test_one_sku_is_picked_from_the_stock_list(client: TestClient, rpc: FakeRpc) -> None:
    response = client.get(f"{P}/stock/MUG")
    assert response.status_code == 200 and response.json()["sku"] == "MUG"
    assert fulfillment_calls(rpc)[-1][1]["sku"] == "MUG"
    problem = assert_problem(client.get(f"{P}/stock/GIFT-CARD"), 404)
    assert problem["sku"] == "GIFT-CARD"


def test_stock_commands(client: TestClient, rpc: FakeRpc) -> None:
    assert client.put(f"{P}/stock/MUG", json={"on_hand": 5, "reason": "stock take"}).status_code == 200
    assert client.post(f"{P}/stock/MUG/adjustments",
                       json={"delta": -1, "reason": "broken", "location": "backroom"}).status_code == 200
    assert_problem(client.post(f"{P}/stock/MUG/adjustments", json={"delta": 0, "reason": "nothing"}), 422)
    assert_problem(client.put(f"{P}/stock/MUG", json={"on_hand": -1, "reason": "oops"}), 422)
    calls = fulfillment_calls(rpc)
    assert calls[0] == ("set_stock", {"sku": "MUG", "command": {"location": "main", "on_hand": 5,
                                                                "reason": "stock take"}, "actor": ACTOR})
    assert calls[1][1]["command"] == {"location": "backroom", "delta": -1, "reason": "broken"}
    assert len(calls) == 2
    assert client.get(f"{P}/stock", params={"low": "true", "limit": 5}).status_code == 200
    assert fulfillment_calls(rpc)[-1][1] == {"sku": None, "location": None, "low": True, "limit": 5, "after": None}
    assert client.get(f"{P}/stock/MUG/movements", params={"limit": 10}).status_code == 200
    assert fulfillment_calls(rpc)[-1] == ("stock_movements", {"sku": "MUG", "limit": 10})
    assert client.post(f"{P}/stock/reconcile", params={"fix": "true"}).json()["checked"] == 3
    assert fulfillment_calls(rpc)[-1] == ("reconcile_stock", {"fix": True})


# ------------------------------------------------------------------------------------------ tables, webhook
def test_status_tables_come_from_the_contract_without_a_call(client: TestClient, rpc: FakeRpc) -> None:
    response = client.get(f"{P}/fulfillment/statuses")
    assert response.status_code == 200
    assert response.json() == status_tables()
    assert rpc.calls == []


def test_the_carrier_webhook_is_public_and_passed_on_raw(client: TestClient, rpc: FakeRpc) -> None:
    body = b'{"id": "evt_1", "type": "tracking.updated", "status": "delivered"}'
    response = client.post(WEBHOOK_PATH, content=body,
                           headers={"Authorization": "", "Content-Type": "application/json",
                                    SIGNATURE_HEADER: "t=1,v1=abc", "X-Other": "dropped"})
    assert response.status_code == 200, response.text
    ((method, kwargs),) = fulfillment_calls(rpc)
    assert method == "handle_carrier_webhook"
    assert kwargs["body"] == body.decode()
    assert kwargs["headers"] == {"content-type": "application/json", SIGNATURE_HEADER.lower(): "t=1,v1=abc"}


# ------------------------------------------------------------------------------------------ completeness
def _contract_rpcs() -> set[str]:
    doc = schemas.__doc__ or ""
    return set(re.findall(r"^\* ``(\w+)\(", doc, re.MULTILINE))


def test_every_rpc_of_the_contract_has_a_route(client: TestClient, rpc: FakeRpc) -> None:
    requests: list[tuple[str, str, Any]] = [
        ("GET", f"/orders/{ORDER_ID}/fulfillment", None),
        ("POST", f"/orders/{ORDER_ID}/fulfillment/pack", None),
        ("POST", f"/orders/{ORDER_ID}/fulfillment/reserve", None),
        ("POST", f"/orders/{ORDER_ID}/shipments", {}),
        ("POST", f"/orders/{ORDER_ID}/shipments/rates", {"packages": [{"weight_grams": 1}]}),
        ("POST", f"/orders/{ORDER_ID}/shipments/label", {"rate_id": "r", "packages": [{"weight_grams": 1}]}),
        ("GET", f"/shipments/{SHIPMENT_ID}", None),
        ("PATCH", f"/shipments/{SHIPMENT_ID}", {}),
        ("POST", f"/shipments/{SHIPMENT_ID}/deliver", None),
        ("POST", f"/shipments/{SHIPMENT_ID}/cancel", None),
        ("GET", f"/shipments/{SHIPMENT_ID}/label.pdf", None),
        ("POST", f"/orders/{ORDER_ID}/returns", {"lines": [{"line": "1", "quantity": 1}]}),
        ("GET", "/stock", None),
        ("PUT", "/stock/MUG", {"on_hand": 1, "reason": "count"}),
        ("POST", "/stock/MUG/adjustments", {"delta": 1, "reason": "received"}),
        ("GET", "/stock/MUG/movements", None),
        ("POST", "/stock/reconcile", None),
        ("GET", f"/orders/{ORDER_ID}/invoice.pdf", None),
        ("POST", WEBHOOK_PATH.removeprefix(P), None),
        ("POST", "/documents/packing-slips.pdf", {"orders": [ORDER_ID]}),
    ]
    for method, path, body in requests:
        response = client.request(method, P + path, json=body)
        assert response.status_code in (200, 201), (method, path, response.text)
    assert {m for m, _k in fulfillment_calls(rpc)} == _contract_rpcs()
    assert len(_contract_rpcs()) == 20
