"""A merchant's staff drive orders over HTTP; an integrator reads every change from RabbitMQ."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import System

pytestmark = pytest.mark.e2e

ORDER = {
    "channel": "whatsapp",
    "customer": {"name": "Asha Rao", "phone": "+91 98450 12345", "email": "asha@example.com"},
    "items": [
        {"sku": "TEE-RED-M", "name": "Red tee, M", "quantity": 2, "unit_price": "12.50"},
        {"sku": "CAP-BLK", "name": "Black cap", "quantity": 1, "unit_price": "9.99"},
    ],
    "currency": "EUR",
    "shipping": "4.90",
}


def events_of(tap: Any, order_id: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += [json.loads(body) for _p, body in tap.drain(wait=0.1) if json.loads(body)["subject"] == order_id]
    # Anything published twice would arrive shortly after; give it the chance to show up.
    got += [json.loads(body) for _p, body in tap.drain(wait=1.0) if json.loads(body)["subject"] == order_id]
    return got


def test_an_order_moves_through_its_stages_and_every_change_is_on_the_bus_once_in_order(
    system: System, tap: Any
) -> None:
    from cloudevents.v1.http import from_json

    with httpx.Client(base_url=system.base, headers=system.headers, timeout=10) as api:
        placed = api.post("/orders", json=ORDER)
        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert order["stage"] == "placed" and order["display_number"].startswith("#")
        assert order["totals"] == {
            "subtotal": "34.99", "shipping": "4.90", "discount": "0.00", "tax": "0.00", "total": "39.89"
        }
        ref = order["id"]
        api.put(f"/orders/{ref}/address", json={"address": {"line1": "12 MG Road", "city": "Bengaluru",
                                                              "country": "IN"}}).raise_for_status()
        api.put(f"/orders/{ref}/payment-method", json={"method": "cash_on_delivery"}).raise_for_status()
        confirmed = api.put(f"/orders/{ref}/customer-note", json={"skip": True})
        assert confirmed.json()["stage"] == "confirmed"  # address + payment + note skipped → confirmed
        for stage in ("approved", "processed", "shipped", "delivered"):
            moved = api.post(f"/orders/{ref}/transitions", json={"to": stage, "reason": f"to {stage}"})
            assert moved.status_code == 200, moved.text
        detail = api.get(f"/orders/{order['number']}").json()
    assert detail["stage"] == "delivered"
    assert detail["allowed_transitions"] == ["returned", "archived"]

    events = events_of(tap, ref, 10)
    assert [e["type"] for e in events] == [
        "order.placed.v1", "order.address_set.v1", "order.payment_method_set.v1", "order.customer_note_set.v1",
    ] + ["order.stage_changed.v1"] * 5
    assert [e["data"].get("to_stage") for e in events[4:]] == ["confirmed", "approved", "processed", "shipped",
                                                                 "delivered"]
    assert [e["sequence"] for e in events] == list(range(1, 10))  # in order, no gap, no duplicate
    assert len({e["id"] for e in events}) == 9
    assert {e["correlationid"] for e in events} == {ref}
    parsed = from_json(json.dumps(events[0]))  # the CloudEvents SDK reads it as is
    assert parsed["type"] == "order.placed.v1" and parsed["source"] == "/oms/orders"
    assert parsed["subject"] == ref and parsed["sequence"] == 1


def test_the_same_idempotency_key_returns_the_first_answer_and_places_one_order(system: System) -> None:
    key = str(uuid.uuid4())
    marker = f"idem-{uuid.uuid4().hex[:8]}"
    body = {**ORDER, "external_ref": marker}
    with httpx.Client(base_url=system.base, headers={**system.headers, "Idempotency-Key": key}) as api:
        first = api.post("/orders", json=body)
        again = api.post("/orders", json=body)
        other = api.post("/orders", json={**body, "shipping": "9.90"})
        found = api.get("/orders", params={"q": "asha", "limit": 200}).json()["items"]
    assert first.status_code == 201 and again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert other.status_code == 422 and other.headers["content-type"].startswith("application/problem+json")
    assert sum(1 for o in found if o["id"] == first.json()["id"]) == 1
    with httpx.Client(base_url=system.base, headers=system.headers) as api:
        mine = [o for o in api.get("/orders", params={"q": "asha", "limit": 200}).json()["items"]]
    # one order placed with that body's marker, however often it was sent
    details = [httpx.get(f"{system.base}/orders/{o['id']}", headers=system.headers).json() for o in mine[:50]]
    assert sum(1 for d in details if d.get("external_ref") == marker) <= 1


def test_wrong_requests_change_nothing_and_say_why(system: System) -> None:
    with httpx.Client(base_url=system.base, headers=system.headers) as api:
        order = api.post("/orders", json=ORDER).json()
        ref = order["id"]
        illegal = api.post(f"/orders/{ref}/transitions", json={"to": "delivered"})
        assert illegal.status_code == 409
        problem = illegal.json()
        assert illegal.headers["content-type"].startswith("application/problem+json")
        assert problem["stage"] == "placed" and "confirmed" in problem["allowed"]
        assert order["display_number"] in problem["detail"]

        # Two staff act on version 1: the first wins, the second is told the order changed meanwhile.
        a = api.post(f"/orders/{ref}/transitions", json={"to": "on_hold", "expected_version": 1})
        b = api.post(f"/orders/{ref}/transitions", json={"to": "cancelled", "expected_version": 1})
        assert a.status_code == 200 and a.json()["stage"] == "on_hold"
        assert b.status_code == 409 and b.json()["title"] == "Version conflict"

        missing = api.get("/orders/999999999")
        assert missing.status_code == 404 and missing.json()["status"] == 404
        bad = api.post("/orders", json={**ORDER, "items": [{"sku": "X", "name": "X", "quantity": 0,
                                                              "unit_price": "1.00"}]})
        assert bad.status_code == 422
        assert [e["field"] for e in bad.json()["errors"]] == ["items[0].quantity"]
        unauthenticated = httpx.get(f"{system.base}/orders")
        assert unauthenticated.status_code == 401
        after = api.get(f"/orders/{ref}").json()
    assert after["stage"] == "on_hold" and after["held_from"] == "placed" and after["version"] == 2
    assert [h["action"] for h in after["history"]] == ["placed", "stage_changed"]


def test_openapi_document_is_generated_from_the_models(system: System) -> None:
    doc = httpx.get(f"{system.base}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert "PlaceOrder" in doc["components"]["schemas"]
    assert "/api/v1/orders/{ref}/transitions" in doc["paths"]
