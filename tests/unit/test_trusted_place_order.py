"""``trusted_place_order`` rebuilds, without validating, exactly the ``PlaceOrder`` that validation built: the
orders service takes the gateway's already-validated commands through it, so it must never drift from the
model (every field, nested models, types)."""

from __future__ import annotations

from typing import Any

import pytest

from services.orders.contracts.schemas import PlaceOrder, trusted_place_order

pytestmark = pytest.mark.unit

FULL: dict[str, Any] = {
    "channel": "marketplace",
    "customer": {"name": "  Ada Lovelace ", "phone": "+44 20 7946 0000", "email": "ada@example.com"},
    "items": [
        {"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "12.50"},
        {"sku": "TEE", "name": "T-shirt", "quantity": 1, "unit_price": "24.9"},
    ],
    "currency": "eur",
    "shipping": "4.90",
    "discount": "1",
    "tax": "0.00",
    "shipping_address": {"line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "de"},
    "payment_method": "cash_on_delivery",
    "customer_note": " Ring twice ",
    "test": True,
    "placed_at": "2024-05-01T10:00:00+02:00",
    "external_ref": "MP-1",
}
MINIMAL: dict[str, Any] = {
    "channel": "web",
    "customer": {"name": "Bench"},
    "items": [{"sku": "TEE", "name": "T-shirt", "quantity": 1, "unit_price": "24.90"}],
    "currency": "JPY",
}


@pytest.mark.parametrize("body", [FULL, MINIMAL], ids=["every field", "defaults"])
def test_it_rebuilds_what_validation_built(body: dict[str, Any]) -> None:
    validated = PlaceOrder.model_validate(body)
    rebuilt = trusted_place_order(validated.model_dump(mode="json"))
    assert rebuilt == validated
    assert rebuilt.model_dump() == validated.model_dump()  # same Python types, not just equal JSON
    assert rebuilt.model_dump_json() == validated.model_dump_json()
    assert [type(i) for i in rebuilt.items] == [type(i) for i in validated.items]


def test_it_knows_every_field_of_the_model() -> None:
    """A new field on PlaceOrder must be added to trusted_place_order too (this fails until it is)."""
    rebuilt = trusted_place_order(PlaceOrder.model_validate(FULL).model_dump(mode="json"))
    assert set(rebuilt.model_fields_set) == set(PlaceOrder.model_fields)
