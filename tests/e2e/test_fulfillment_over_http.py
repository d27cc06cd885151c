"""Fulfillment over HTTP with the real processes: orders, payments, fulfillment, the gateway, the sandbox payment
provider and the sandbox carrier. The carrier's parcels are moved with its control endpoints, whose signed
webhooks come back through the gateway as they would from a real carrier.

Each test uses SKUs of its own, so the tests share the stock table without seeing each other.
"""

from __future__ import annotations

import io
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Payments, free_port, until
from tests.processes import _process, service_process

pytestmark = pytest.mark.e2e

DEV_API_KEY = "sandbox-carrier-key"  # the sandbox carrier's development API key (OMS_CARRIER_API_KEY unset)
ADDRESS = {"address": {"line1": "12 Parcel Lane", "city": "Berlin", "postal_code": "10115", "country": "DE"}}
PACKAGES = [{"preset": "small_box", "weight_grams": 700}]


@dataclass
class Shipping:
    payments: Payments
    carrier: str

    def api(self, **headers: str) -> httpx.Client:
        return self.payments.api(**headers)

    def track(self, tracking_number: str, status: str, **extra: Any) -> dict[str, Any]:
        """The carrier reports a tracking event (its signed webhook reaches the gateway before this returns)."""
        sent = httpx.post(f"{self.carrier}/v1/sandbox/tracking/{tracking_number}", json={"status": status, **extra},
                          timeout=15)
        assert sent.status_code == 200, sent.text
        body: dict[str, Any] = sent.json()
        assert body["deliveries"] and all(d["status_code"] == 200 for d in body["deliveries"]), body
        return body

    def carrier_tracking(self, tracking_number: str) -> dict[str, Any]:
        got = httpx.get(f"{self.carrier}/v1/tracking/{tracking_number}",
                        headers={"Authorization": f"Bearer {DEV_API_KEY}"}, timeout=10)
        assert got.status_code == 200, got.text
        return dict(got.json())


@pytest.fixture(scope="session")
def shipping(payments: Payments, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shipping]:
    """The fulfillment service and the sandbox carrier next to the system of ``payments``. The sandbox starts as
    ``oms run`` starts it: port from the environment, webhooks to the gateway's port, development secrets."""
    port = free_port()
    env = {**payments.system.env, "OMS_SANDBOX_CARRIER_PORT": str(port), "OMS_CARRIER_URL": f"http://127.0.0.1:{port}",
           "OMS_STORE_NAME": "Parcel & Co", "OMS_STORE_ADDRESS": "1 Warehouse Street, 10115 Berlin",
           "OMS_STORE_COUNTRY": "DE"}
    logs = tmp_path_factory.mktemp("fulfillment-e2e-logs")
    carrier_cmd = [sys.executable, "-m", "services.fulfillment.carrier.sandbox"]
    with _process(carrier_cmd, "sandbox-carrier", env, logs, "Uvicorn running"), \
            service_process("fulfillment", env, logs):
        yield Shipping(payments, f"http://127.0.0.1:{port}")


# ------------------------------------------------------------------------------------------- helpers
def sku(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8].upper()}"


def set_stock(api: httpx.Client, code: str, on_hand: int, location: str = "main") -> dict[str, Any]:
    response = api.put(f"/stock/{code}", json={"on_hand": on_hand, "location": location, "reason": "stock take"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def stock(api: httpx.Client, code: str) -> dict[str, Any]:
    response = api.get(f"/stock/{code}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def place(api: httpx.Client, items: list[dict[str, Any]], currency: str = "EUR", shipping: str = "4.90",
          method: str = "cash_on_delivery") -> dict[str, Any]:
    body = {"channel": "whatsapp", "currency": currency, "shipping": shipping, "items": items,
            "customer": {"name": "Fritz Fulfil", "phone": "+49 30 5551234", "email": "fritz@example.com"}}
    placed = api.post("/orders", json=body)
    assert placed.status_code == 201, placed.text
    ref = placed.json()["id"]
    api.put(f"/orders/{ref}/address", json=ADDRESS).raise_for_status()
    api.put(f"/orders/{ref}/payment-method", json={"method": method}).raise_for_status()
    api.put(f"/orders/{ref}/customer-note", json={"skip": True}).raise_for_status()
    return dict(api.get(f"/orders/{ref}").json())


def fulfillment_when(api: httpx.Client, ref: str, check: Callable[[dict[str, Any]], bool],
                     what: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        got = api.get(f"/orders/{ref}/fulfillment")
        return got.json() if got.status_code == 200 and check(got.json()) else None

    return dict(until(probe, what))


def order_when(api: httpx.Client, ref: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        got = api.get(f"/orders/{ref}")
        return got.json() if got.status_code == 200 and check(got.json()) else None

    return dict(until(probe, what))


def approved(api: httpx.Client, items: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """An order placed (its stock reserved), confirmed and approved: ready to fulfil."""
    order = place(api, items, **kwargs)
    assert order["stage"] == "confirmed", order
    fulfillment_when(api, order["id"], lambda f: f["reservation"] in ("reserved", "not_tracked"),
                     "the stock to be reserved")
    moved = api.post(f"/orders/{order['id']}/transitions", json={"to": "approved"})
    assert moved.status_code == 200, moved.text
    fulfillment_when(api, order["id"], lambda f: f["order_stage"] == "approved" and f["can_fulfill"],
                     "fulfillment to see the order approved")
    return dict(moved.json())


def buy_label(api: httpx.Client, ref: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    rates = api.post(f"/orders/{ref}/shipments/rates", json={"lines": lines, "packages": PACKAGES})
    assert rates.status_code == 200, rates.text
    assert rates.json()["rates"], rates.text
    rate = rates.json()["rates"][0]
    assert Decimal(rate["amount"]) > 0 and rate["estimated_delivery"]
    body = {"lines": lines, "packages": PACKAGES, "rate_id": rate["rate_id"]}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    bought = api.post(f"/orders/{ref}/shipments/label", json=body, headers=key)
    assert bought.status_code == 201, bought.text
    again = api.post(f"/orders/{ref}/shipments/label", json=body, headers=key)
    assert again.status_code == 201 and again.json()["id"] == bought.json()["id"]  # one label, not two
    shipment = dict(bought.json())
    assert shipment["kind"] == "carrier" and shipment["tracking_number"] and shipment["label_available"]
    return shipment


def manual(api: httpx.Client, ref: str, lines: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    created = api.post(f"/orders/{ref}/shipments", json={"lines": lines, **extra})
    assert created.status_code == 201, created.text
    assert created.headers["location"].endswith(f"/shipments/{created.json()['id']}")
    return dict(created.json())


def line(view: dict[str, Any], code: str) -> dict[str, Any]:
    return next(dict(row) for row in view["lines"] if row["sku"] == code)


def pdf_text(content: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


# ------------------------------------------------------------------------------------------- scenarios
def test_split_shipment_where_one_parcel_fails_and_is_shipped_again(shipping: Shipping) -> None:
    tee, mug = sku("TEE"), sku("MUG")
    with shipping.api() as api:
        set_stock(api, tee, 5)
        set_stock(api, mug, 3)
        order = approved(api, [{"sku": tee, "name": "Red tee", "quantity": 2, "unit_price": "12.50"},
                               {"sku": mug, "name": "Mug", "quantity": 1, "unit_price": "9.99"}])
        ref = order["id"]
        assert (stock(api, tee)["reserved"], stock(api, tee)["available"]) == (2, 3)  # reserved at placement

        parcel = buy_label(api, ref, [{"line": tee, "quantity": 2}])
        local = manual(api, ref, [{"line": "2", "quantity": 1}], carrier="Own van", shipped=True)
        assert local["status"] == "shipped"
        view = fulfillment_when(api, ref, lambda f: f["status"] == "partially_fulfilled", "partially fulfilled")
        assert line(view, tee)["in_open_shipments"] == 2 and line(view, mug)["handed_over"] == 1
        assert line(view, tee)["unfulfilled"] == 0  # never more than what is left
        over = api.post(f"/orders/{ref}/shipments", json={"lines": [{"line": tee, "quantity": 1}]})
        assert over.status_code in (409, 422), over.text

        shipping.track(parcel["tracking_number"], "picked_up")
        assert (stock(api, tee)["on_hand"], stock(api, tee)["reserved"]) == (3, 0)  # consumed at hand-over
        shipping.track(parcel["tracking_number"], "in_transit")
        shipping.track(parcel["tracking_number"], "failure", description="Nobody at home, returned")
        failed = api.get(f"/shipments/{parcel['id']}").json()
        assert failed["status"] == "delivery_failed"
        view = fulfillment_when(api, ref, lambda f: line(f, tee)["unfulfilled"] == 2, "the failed units back")
        assert view["status"] == "partially_fulfilled"
        assert (stock(api, tee)["on_hand"], stock(api, tee)["reserved"]) == (5, 2)  # back, held for the order

        again = manual(api, ref, [{"line": tee, "quantity": 2}], shipped=True)
        fulfillment_when(api, ref, lambda f: f["status"] == "fulfilled", "fulfilled")
        order_when(api, ref, lambda o: o["stage"] == "shipped", "the order to follow to shipped")
        for shipment in (local, again):
            delivered = api.post(f"/shipments/{shipment['id']}/deliver")
            assert delivered.status_code == 200 and delivered.json()["status"] == "delivered", delivered.text
        view = fulfillment_when(api, ref, lambda f: f["status"] == "delivered", "delivered")
        assert [s["status"] for s in view["shipments"]].count("delivery_failed") == 1
        assert line(view, tee)["returnable"] == 2

        final = order_when(api, ref, lambda o: o["stage"] == "delivered", "the order to follow to delivered")
        stages = [h["to_stage"] for h in final["history"] if h["action"] == "stage_changed"]
        assert stages[-4:] == ["approved", "processed", "shipped", "delivered"]
        assert final["fulfillment_status"] == "delivered" and len(final["shipments"]) == 3
        assert (stock(api, tee)["on_hand"], stock(api, tee)["reserved"]) == (3, 0)
        assert (stock(api, mug)["on_hand"], stock(api, mug)["reserved"]) == (2, 0)
        moves = api.get(f"/stock/{tee}/movements").json()["items"]
        assert sum(m["delta_on_hand"] for m in moves) == 3 and sum(m["delta_reserved"] for m in moves) == 0
        listed = api.get("/orders", params={"fulfillment_status": "delivered", "q": tee}).json()["items"]
        assert [o["id"] for o in listed] == [ref]


def test_a_carrier_shipment_refuses_manual_changes_and_late_tracking(shipping: Shipping) -> None:
    lamp = sku("LAMP")
    with shipping.api() as api:
        set_stock(api, lamp, 4)
        ref = approved(api, [{"sku": lamp, "name": "Lamp", "quantity": 1, "unit_price": "30.00"}])["id"]
        parcel = buy_label(api, ref, [])
        assert parcel["can_edit"] is False and parcel["allowed_statuses"] == []
        label = api.get(f"/shipments/{parcel['id']}/label.pdf")
        assert label.status_code == 200 and label.headers["content-type"] == "application/pdf"
        assert parcel["tracking_number"] in pdf_text(label.content)

        edit = api.patch(f"/shipments/{parcel['id']}", json={"tracking_number": "MINE-1"})
        assert edit.status_code == 409, edit.text
        assert edit.headers["content-type"] == "application/problem+json"
        assert "tracking_number" in edit.text  # the refusal names the field
        assert api.post(f"/shipments/{parcel['id']}/deliver").status_code == 409
        assert api.get(f"/shipments/{parcel['id']}").json()["tracking_number"] == parcel["tracking_number"]

        shipping.track(parcel["tracking_number"], "picked_up")
        shipping.track(parcel["tracking_number"], "delivered", repeat=2)  # delivered twice
        late = (datetime.now(UTC) - timedelta(hours=6)).isoformat()
        shipping.track(parcel["tracking_number"], "in_transit", occurred_at=late)  # a late update
        shipment = api.get(f"/shipments/{parcel['id']}").json()
        assert shipment["status"] == "delivered"
        applied = [(t["status"], t["applied"]) for t in shipment["tracking"] if t["source"] == "carrier"]
        assert applied.count(("delivered", True)) == 1
        # the duplicate carries the same carrier event id: recorded once; the late update is kept, not applied
        assert ("in_transit", False) in applied and applied.count(("delivered", False)) == 0
        fulfillment_when(api, ref, lambda f: f["status"] == "delivered", "delivered")
        order_when(api, ref, lambda o: o["stage"] == "delivered", "the order delivered")


def test_a_partial_return_restocks_and_the_refund_preview_offers_it(shipping: Shipping) -> None:
    tee, mug = sku("TEE"), sku("MUG")
    with shipping.api() as api:
        set_stock(api, tee, 10)
        set_stock(api, mug, 10)
        order = approved(api, [{"sku": tee, "name": "Red tee", "quantity": 2, "unit_price": "12.50"},
                               {"sku": mug, "name": "Mug", "quantity": 1, "unit_price": "9.99"}])
        ref = order["id"]
        paid = api.post(f"/orders/{ref}/payments/manual", json={"amount": "39.89", "reference": f"CASH-{ref}"})
        assert paid.status_code == 200, paid.text
        shipment = manual(api, ref, [], shipped=True)
        api.post(f"/shipments/{shipment['id']}/deliver").raise_for_status()
        fulfillment_when(api, ref, lambda f: f["status"] == "delivered", "delivered")

        too_many = api.post(f"/orders/{ref}/returns", json={"lines": [{"line": tee, "quantity": 3}]})
        assert too_many.status_code in (409, 422), too_many.text
        returned = api.post(f"/orders/{ref}/returns",
                            json={"lines": [{"line": tee, "quantity": 1, "restock": True},
                                            {"line": mug, "quantity": 1, "restock": False}], "reason": "too small"})
        assert returned.status_code == 201, returned.text
        view = fulfillment_when(api, ref, lambda f: f["status"] == "partially_returned", "partially returned")
        assert (line(view, tee)["returned"], line(view, tee)["returnable"]) == (1, 1)
        assert stock(api, tee)["on_hand"] == 9  # 10 - 2 shipped + 1 restocked
        assert stock(api, mug)["on_hand"] == 9  # not restocked
        order_when(api, ref, lambda o: o["fulfillment_status"] == "partially_returned", "orders to see the return")
        assert api.get(f"/orders/{ref}").json()["stage"] == "delivered"  # partially returned moves no stage

        def preview() -> dict[str, Any] | None:
            got = api.post(f"/orders/{ref}/refunds/preview", json={"from_returns": True})
            return got.json() if got.status_code == 200 and Decimal(got.json()["total"]) > 0 else None

        offered = until(preview, "payments to offer the returned units")
        assert Decimal(offered["total"]) == Decimal("22.49")  # 1 x 12.50 + 1 x 9.99, nothing else

        rest = api.post(f"/orders/{ref}/returns", json={"lines": [{"line": tee, "quantity": 1}]})
        assert rest.status_code == 201, rest.text
        fulfillment_when(api, ref, lambda f: f["status"] == "returned", "returned")
        order_when(api, ref, lambda o: o["stage"] == "returned", "the order returned")


def test_a_cancelled_order_voids_its_label_and_a_moving_parcel_cannot_be_voided(shipping: Shipping) -> None:
    vase, bowl = sku("VASE"), sku("BOWL")
    with shipping.api() as api:
        set_stock(api, vase, 2)
        ref = approved(api, [{"sku": vase, "name": "Vase", "quantity": 1, "unit_price": "45.00"}])["id"]
        parcel = buy_label(api, ref, [])
        cancelled = api.post(f"/orders/{ref}/transitions", json={"to": "cancelled", "reason": "customer asked"})
        assert cancelled.status_code == 200, cancelled.text
        view = fulfillment_when(api, ref, lambda f: f["status"] == "canceled", "fulfillment cancelled")
        assert view["shipments"][0]["status"] == "canceled"
        assert shipping.carrier_tracking(parcel["tracking_number"])["status"] == "voided"  # the label is voided
        assert (stock(api, vase)["on_hand"], stock(api, vase)["reserved"]) == (2, 0)  # released
        stale = api.post(f"/orders/{ref}/shipments", json={})  # a stale screen
        assert stale.status_code == 409, stale.text

        set_stock(api, bowl, 2)
        other = approved(api, [{"sku": bowl, "name": "Bowl", "quantity": 1, "unit_price": "15.00"}])["id"]
        moving = buy_label(api, other, [])
        shipping.track(moving["tracking_number"], "picked_up")
        shipping.track(moving["tracking_number"], "in_transit")
        refused = api.post(f"/shipments/{moving['id']}/cancel", json={"reason": "too late?"})
        assert refused.status_code == 409, refused.text
        assert api.get(f"/shipments/{moving['id']}").json()["status"] == "in_transit"  # stays as it is


def test_invoice_and_packing_slip_pdfs_carry_the_exact_amounts(shipping: Shipping) -> None:
    lamp, card = sku("LAMP"), sku("GIFTCARD")
    with shipping.api() as api:
        set_stock(api, lamp, 5)  # the gift card is not stock-tracked
        order = approved(api, [{"sku": lamp, "name": "Brass lamp", "quantity": 3, "unit_price": "14.845"},
                               {"sku": card, "name": "Gift card", "quantity": 1, "unit_price": "20.000"}],
                         currency="TND", shipping="7.000")
        ref, number = order["id"], order["number"]
        view = fulfillment_when(api, ref, lambda f: True, "the fulfillment")
        assert line(view, card)["stock_tracked"] is False and line(view, card)["reserved"] == 0
        shipment = manual(api, ref, [{"line": lamp, "quantity": 3}])

        invoice = api.get(f"/orders/{number}/invoice.pdf")
        assert invoice.status_code == 200, invoice.text
        assert invoice.headers["content-type"] == "application/pdf"
        assert invoice.headers["content-disposition"].startswith('inline; filename="INV-')
        text = pdf_text(invoice.content)
        assert str(number) in text and "INV-" in text and "Parcel & Co" in text
        for amount in ("14.845", "44.535", "20.000", "64.535", "7.000 TND", "71.535 TND"):
            assert amount in text, (amount, text)
        again = pdf_text(api.get(f"/orders/{ref}/invoice.pdf").content)
        invoice_number = next(w for w in text.split() if w.startswith("INV-"))
        assert invoice_number in again  # numbered once, kept

        html = api.get(f"/orders/%23{number}/invoice.html")
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert "71.535 TND" in html.text

        slip = api.get(f"/shipments/{shipment['id']}/packing-slip.pdf")
        assert slip.status_code == 200, slip.text
        slip_text = pdf_text(slip.content)
        assert f"PS-{shipment['number']}" in slip_text and lamp in slip_text
        assert card not in slip_text and "14.845" not in slip_text  # its lines only, no prices

        details = pdf_text(api.get(f"/orders/{number}/details.pdf").content)
        assert f"ORD-{number}" in details and "71.535 TND" in details and shipment["number"] in details


def test_out_of_stock_holds_the_order_until_restocked(shipping: Shipping) -> None:
    chair, bolt = sku("CHAIR"), sku("BOLT")
    with shipping.api() as api:
        set_stock(api, chair, 1)
        set_stock(api, bolt, 50)
        order = place(api, [{"sku": chair, "name": "Chair", "quantity": 2, "unit_price": "80.00"},
                            {"sku": bolt, "name": "Bolt", "quantity": 4, "unit_price": "0.50"}])
        ref = order["id"]
        view = fulfillment_when(api, ref, lambda f: f["reservation"] == "out_of_stock", "the shortage")
        assert view["can_fulfill"] is False
        held = order_when(api, ref, lambda o: o["stage"] == "on_hold", "the order on hold")
        assert any(h.get("reason") == "out_of_stock" for h in held["history"]), held["history"]
        assert stock(api, bolt)["reserved"] == 0  # all or nothing: the bolts are not held either
        assert stock(api, chair)["reserved"] == 0

        api.post(f"/stock/{chair}/adjustments", json={"delta": 1, "reason": "received"}).raise_for_status()
        retried = api.post(f"/orders/{ref}/fulfillment/reserve")
        assert retried.status_code == 200, retried.text
        assert retried.json()["reservation"] == "reserved"
        assert (stock(api, chair)["reserved"], stock(api, bolt)["reserved"]) == (2, 4)
        reasons = [m["reason"] for m in api.get(f"/stock/{chair}/movements").json()["items"]]
        assert "received" in reasons and "stock take" in reasons
