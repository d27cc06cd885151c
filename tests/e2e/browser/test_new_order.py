"""Creating an order by hand in the dashboard (seed 004 "Create New Order Manually") and placing a test order in
one click (seed 003): what a member of staff sees, and what the API then holds."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.browser.conftest import Dashboard, shot

pytestmark = pytest.mark.e2e


def _order_number(page: Any) -> int:
    page.wait_for_url(re.compile(r".*#/orders/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def test_staff_places_an_order_by_hand_and_sees_the_apis_problem_next_to_the_field(
        as_role: Any, dashboard: Dashboard) -> None:
    page = as_role("staff")
    page.get_by_role("link", name="New order").click()
    expect(page.get_by_role("heading", name="New order")).to_be_visible()

    page.get_by_label("Name", exact=True).fill("Mira Handley")
    page.get_by_label("Phone").fill("+44 20 7946 0000")
    page.get_by_label("E-mail").fill("mira@example.com")
    page.get_by_label("SKU of line 1").fill("MUG-HAND-01")
    page.get_by_label("Name of line 1").fill("Hand-thrown mug")
    page.get_by_label("Quantity of line 1").fill("2")
    page.get_by_label("Unit price of line 1").fill("18.00")
    page.get_by_role("button", name="Add line").click()
    page.get_by_label("SKU of line 2").fill("TEA-GRN-100")
    page.get_by_label("Name of line 2").fill("Green tea 100 g")
    page.get_by_label("Quantity of line 2").fill("1")
    page.get_by_label("Unit price of line 2").fill("6.505")  # finer than a cent: the API refuses it
    page.get_by_label("Address line 1").fill("221B Baker Street")
    page.get_by_label("City").fill("London")
    page.get_by_label("Postal code").fill("NW1 6XE")
    page.get_by_label("Country (2 letters)").fill("GB")
    page.get_by_label("Currency").fill("GBP")
    page.get_by_label("Payment method").select_option("cash_on_delivery")
    page.get_by_label("Customer's note").fill("Please ring twice")
    page.get_by_role("button", name="Place order").click()

    price = page.get_by_label("Unit price of line 2")
    expect(price).to_have_attribute("aria-invalid", "true")
    error = page.locator('[name="items[1].unit_price"] + .field-error')
    expect(error).to_be_visible()
    with dashboard.api() as api:  # the page shows the API's own words for that field
        answer = api.post("/orders", json={
            "channel": "manual", "currency": "GBP", "customer": {"name": "x"},
            "items": [{"sku": "A", "name": "a", "quantity": 1, "unit_price": "18.00"},
                      {"sku": "B", "name": "b", "quantity": 1, "unit_price": "6.505"}]})
    assert answer.status_code == 422
    reasons = [e["reason"] for e in answer.json()["errors"] if e["field"] == "items[1].unit_price"]
    assert reasons and error.inner_text() == reasons[0]
    expect(page.locator('[name="items[0].unit_price"] + .field-error')).to_have_count(0)
    shot(page, "new-order-field-error")

    price.fill("6.50")
    page.get_by_role("button", name="Place order").click()
    number = _order_number(page)
    expect(page.locator(".toast", has_text=f"Order #{number} placed")).to_be_visible()

    with dashboard.api() as api:
        order = api.get(f"/orders/{number}").json()
    assert order["channel"] == "manual" and order["test"] is False
    assert order["customer"] == {"name": "Mira Handley", "phone": "+44 20 7946 0000", "email": "mira@example.com"}
    assert [(i["sku"], i["quantity"], i["unit_price"]) for i in order["items"]] == [
        ("MUG-HAND-01", 2, "18.00"), ("TEA-GRN-100", 1, "6.50")]
    assert order["currency"] == "GBP" and order["totals"]["total"] == "42.50"
    assert order["shipping_address"]["city"] == "London" and order["payment_method"] == "cash_on_delivery"


def test_a_removed_line_is_not_ordered(as_role: Any, dashboard: Dashboard) -> None:
    page = as_role("staff")
    page.goto("/#/orders/new")
    page.get_by_label("Name", exact=True).fill("Lena Short")
    expect(page.get_by_role("button", name="Remove line 1")).to_be_disabled()  # an order has at least one line
    page.get_by_label("SKU of line 1").fill("DROP-ME")
    page.get_by_label("Name of line 1").fill("Unwanted")
    page.get_by_label("Unit price of line 1").fill("1.00")
    page.get_by_role("button", name="Add line").click()
    page.get_by_label("SKU of line 2").fill("KEEP-ME")
    page.get_by_label("Name of line 2").fill("Wanted")
    page.get_by_label("Quantity of line 2").fill("3")
    page.get_by_label("Unit price of line 2").fill("2.25")
    page.get_by_role("button", name="Remove line 1").click()
    expect(page.get_by_label("SKU of line 1")).to_have_value("KEEP-ME")
    page.get_by_role("button", name="Place order").click()
    number = _order_number(page)
    with dashboard.api() as api:
        order = api.get(f"/orders/{number}").json()
    assert [(i["sku"], i["quantity"]) for i in order["items"]] == [("KEEP-ME", 3)]
    assert order["totals"]["subtotal"] == "6.75" and order["currency"] == "EUR"


def test_one_click_places_a_test_order(as_role: Any, dashboard: Dashboard) -> None:
    page = as_role("staff")
    page.goto("/#/orders/new")
    page.get_by_role("button", name="Place test order").click()
    number = _order_number(page)
    expect(page.locator(".toast", has_text=f"Test order #{number} placed")).to_be_visible()
    with dashboard.api() as api:
        order = api.get(f"/orders/{number}").json()
    assert order["test"] is True and order["channel"] == "test"
    assert order["items"] and order["shipping_address"] is not None


def test_a_viewer_is_not_offered_new_orders(as_role: Any) -> None:
    page = as_role("viewer")
    expect(page.get_by_role("link", name="New order")).to_have_count(0)
    page.goto("/#/orders/new")
    expect(page.get_by_text("Your role may not create orders.")).to_be_visible()
    expect(page.get_by_role("button", name="Place order")).to_have_count(0)
    expect(page.get_by_role("button", name="Place test order")).to_have_count(0)
