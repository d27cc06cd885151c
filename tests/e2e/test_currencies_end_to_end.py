"""Currencies whose minor unit is not 2, end to end: placed, paid by card at the sandbox, partly refunded.

Orders, payments, the gateway and the sandbox provider each read and print the amounts; every one of them
must say the same exact amount (no rounding, no ``.00`` on yen, three decimals on dinars), because all of
them use ``shared.money``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.payments.contracts.sandbox import CARD_SUCCESS
from shared.money import format_amount
from tests.e2e.conftest import Payments, until

pytestmark = pytest.mark.e2e

ADDRESS = {"address": {"line1": "1 Money Street", "city": "Tunis", "postal_code": "1000", "country": "TN"}}

# currency, mug price (3 of them), tee price (1), shipping, the order total, and the refund of one mug + shipping
CASES = [
    ("JPY", "1200", "2500", "500", "6600", "1700"),
    ("KRW", "15900", "32000", "3000", "82700", "18900"),
    ("TND", "12.345", "20.005", "7.500", "64.540", "19.845"),
    ("KWD", "1.255", "4.125", "0.750", "8.640", "2.005"),
]


def _order(currency: str, mug: str, tee: str, shipping: str) -> dict[str, Any]:
    return {
        "channel": "web",
        "customer": {"name": "Mona Coin", "email": "mona@example.com"},
        "items": [
            {"sku": "MUG", "name": "Mug", "quantity": 3, "unit_price": mug},
            {"sku": "TEE", "name": "Tee", "quantity": 1, "unit_price": tee},
        ],
        "currency": currency,
        "shipping": shipping,
    }


@pytest.mark.parametrize(("currency", "mug", "tee", "shipping", "total", "refund"), CASES)
def test_an_order_is_placed_paid_and_partly_refunded_with_exact_amounts_everywhere(
    payments: Payments, currency: str, mug: str, tee: str, shipping: str, total: str, refund: str
) -> None:
    with payments.api() as api:
        placed = api.post("/orders", json=_order(currency, mug, tee, shipping))
        assert placed.status_code == 201, placed.text
        order = placed.json()
        ref = order["id"]
        assert order["currency"] == currency and order["totals"]["total"] == total
        assert [i["unit_price"] for i in order["items"]] == [mug, tee]
        api.put(f"/orders/{ref}/address", json=ADDRESS).raise_for_status()
        api.put(f"/orders/{ref}/payment-method", json={"method": "card"}).raise_for_status()
        api.put(f"/orders/{ref}/customer-note", json={"skip": True}).raise_for_status()

        until(lambda: api.get(f"/orders/{ref}/payments").status_code == 200, "payments to know the order")
        link = api.post(f"/orders/{ref}/payments/link")
        assert link.status_code == 200, link.text
        assert link.json()["amount"] == total and link.json()["currency"] == currency
        paid = httpx.post(f"{payments.sandbox}/v1/payment_links/{link.json()['link_id']}/pay",
                          json={"card_number": CARD_SUCCESS}, headers={"Idempotency-Key": str(uuid.uuid4())})
        assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
        assert paid.json()["amount"] == total  # the provider charged exactly the order's total

        def summary_paid() -> dict[str, Any] | None:
            s = api.get(f"/orders/{ref}/payments").json()
            return s if s["status"] == "paid" else None

        summary = until(summary_paid, f"the {currency} order to be paid")
        assert summary["captured"] == total and summary["balance_due"] == format_amount(Decimal(0), currency)

        request = {"lines": {"MUG": 1}, "shipping": shipping}
        preview = api.post(f"/orders/{ref}/refunds/preview", json=request).json()
        assert preview["ok"] and preview["total"] == refund, preview
        done = api.post(f"/orders/{ref}/refunds", json=request)
        assert done.status_code == 200 and done.json()["total"] == refund, done.text

        after = api.get(f"/orders/{ref}/payments").json()
        assert after["status"] == "partially_refunded" and after["refunded"] == refund
        at_provider = httpx.get(f"{payments.sandbox}/v1/payments/{paid.json()['id']}").json()
        assert at_provider["amount_refunded"] == refund  # the provider gave back exactly that
        history = until(lambda: [h for h in api.get(f"/orders/{ref}").json()["history"]
                                 if h["action"] == "refund_completed"], "the refund in the order's history")
        assert history[0]["data"]["amount"] == refund
        listed = api.get("/orders", params={"q": str(order["number"])}).json()["items"]
        assert listed[0]["totals"]["total"] == total and listed[0]["payment_status"] == "partially_refunded"


def test_amounts_finer_than_the_currency_and_unknown_currencies_are_refused_naming_the_field(
    payments: Payments,
) -> None:
    with payments.api() as api:
        yen = api.post("/orders", json=_order("JPY", "10.5", "2500", "0"))
        assert yen.status_code == 422, yen.text
        assert [e["field"] for e in yen.json()["errors"]] == ["items[0].unit_price"]
        unknown = api.post("/orders", json=_order("ABC", "1", "1", "0"))
        assert unknown.status_code == 422, unknown.text
        assert [e["field"] for e in unknown.json()["errors"]] == ["currency"]
        gold = api.post("/orders", json=_order("XAU", "1", "1", "0"))
        assert gold.status_code == 422 and gold.json()["errors"][0]["field"] == "currency"
