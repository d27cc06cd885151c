"""One money for every service: for every ISO 4217 currency, what orders accept, payments accept too, with the
same quantized amounts, printed the same (the issue's "10.005 TND accepted by orders, refused by payments").

Orders' side: its contract (``PlaceOrder``) and domain totals (via ``tests.builders``); payments' side: the
same ``order.placed`` event after a trip through JSON, read into payments' domain, printed by its views; and
the sandbox provider takes a payment link in the currency.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from services.orders.contracts.events import OrderPlaced
from services.payments.contracts.schemas import PaymentLinkView
from services.payments.provider.sandbox import create_app
from services.payments.settings import DEV_WEBHOOK_SECRET
from services.payments.usecases.saga import order_payments
from shared.money import CURRENCIES, minor_unit, quantize
from tests.builders import order_placed, place_order

pytestmark = pytest.mark.unit


def amount_in(currency: str, minor_units: int) -> str:
    """An amount typed with exactly the currency's decimals (``1234`` minor units: 12.34 EUR, 1.234 TND)."""
    places = minor_unit(currency)
    return str(Decimal(minor_units).scaleb(-places))


@settings(max_examples=300, deadline=None)
@given(
    currency=st.sampled_from(sorted(CURRENCIES)),
    prices=st.lists(st.tuples(st.integers(1, 10**7), st.integers(1, 50)), min_size=1, max_size=4),
    shipping=st.integers(0, 10**5),
)
def test_payments_read_every_order_amount_as_orders_computed_it(
    currency: str, prices: list[tuple[int, int]], shipping: int
) -> None:
    command = place_order(
        currency.lower(),  # the contract normalizes the code
        [(f"SKU{i}", qty, amount_in(currency, price)) for i, (price, qty) in enumerate(prices)],
        shipping=amount_in(currency, shipping),
    )
    placed = order_placed(command)
    on_the_bus = OrderPlaced.model_validate_json(placed.model_dump_json())

    order = order_payments(on_the_bus)
    assert order.currency == currency
    assert order.total == placed.totals.total == order.order.computed_total
    printed_by_orders = placed.model_dump(mode="json")["totals"]["total"]
    printed_by_payments = PaymentLinkView(
        order_id=order.order_id, payment_id="p", link_id="l", url="u", amount=quantize(order.total, currency),
        currency=currency, status="open",
    ).model_dump(mode="json")["amount"]
    assert printed_by_payments == printed_by_orders
    assert len(printed_by_orders.partition(".")[2]) == minor_unit(currency)
    assert order.summary().balance_due == placed.totals.total


@pytest.fixture(scope="module")
def sandbox() -> TestClient:
    return TestClient(create_app(None, DEV_WEBHOOK_SECRET))


@pytest.mark.parametrize("currency", sorted(CURRENCIES))
def test_the_sandbox_provider_takes_a_payment_link_in_every_currency(sandbox: TestClient, currency: str) -> None:
    amount = amount_in(currency, 123456)
    answer = sandbox.post("/v1/payment_links", json={"amount": amount, "currency": currency, "reference": "r"},
                          headers={"Idempotency-Key": f"money-{currency}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["amount"] == amount and answer.json()["currency"] == currency
