"""Realistic test orders (``POST /test-orders``): channel ``test``, marked ``test=true``, built from a small
catalogue with the caller's overrides, so a shop can try the whole flow without inventing an order."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from services.orders.contracts.schemas import Address, Channel, Customer, LineItemIn, PaymentMethodChoice, PlaceOrder


class TestOrderOptions(BaseModel):
    """Overrides for a generated test order; everything is optional. Pass ``shipping_address: null`` or
    ``payment_method: null`` to leave them open (the order then stays ``placed``)."""

    __test__ = False  # not a pytest test class
    model_config = ConfigDict(extra="forbid")

    customer: Customer | None = None
    items: Annotated[list[LineItemIn], Field(min_length=1, max_length=500)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")] | None = None
    shipping_address: Address | None = None
    payment_method: PaymentMethodChoice | None = None
    customer_note: Annotated[str, Field(max_length=5000)] | None = None


_CATALOGUE = [
    ("TEE-BLK-M", "Organic cotton T-shirt, black, M", "24.90"),
    ("HOOD-GRY-L", "Hoodie, heather grey, L", "59.00"),
    ("MUG-CER-01", "Ceramic mug 350 ml", "12.50"),
    ("CAP-NVY", "Baseball cap, navy", "19.95"),
    ("SOCK-3PK", "Merino socks, 3-pack", "17.40"),
    ("TOTE-NAT", "Canvas tote bag", "9.90"),
]


def build_test_order(options: TestOrderOptions | None) -> PlaceOrder:
    """A realistic order from the ``test`` channel, marked ``test=true``, with the caller's overrides."""
    opts = options or TestOrderOptions()
    given = opts.model_fields_set
    picks = random.sample(_CATALOGUE, k=random.randint(1, 3))
    items = opts.items or [
        LineItemIn(sku=sku, name=name, quantity=random.randint(1, 3), unit_price=Decimal(price))
        for sku, name, price in picks
    ]
    address = opts.shipping_address if "shipping_address" in given else Address(
        line1="Teststraße 1", city="Berlin", postal_code="10115", country="DE"
    )
    payment = opts.payment_method if "payment_method" in given else PaymentMethodChoice.cash_on_delivery
    return PlaceOrder(
        channel=Channel.test,
        customer=opts.customer or Customer(name="Test Customer", phone="+49 30 1234567",
                                           email="test.customer@example.com"),
        items=items,
        currency=(opts.currency or "EUR").upper(),
        shipping=Decimal("4.90"),
        shipping_address=address,
        payment_method=payment,
        customer_note=opts.customer_note,
        test=True,
    )
