"""The orders page in a real browser (issue #13): an order placed through the API appears live, its payment
indicator turns when the customer pays at the payment sandbox, sort and filter change the rows, a saved view is
shared and picked back, the CSV export downloads the filtered rows, bulk approve asks first and approves, and the
bulk packing slips are one PDF with a page per shipment. Each test tags its orders with a word of its own and
searches for it, so the tests do not see each other's orders."""

from __future__ import annotations

import csv
import io
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.browser.conftest import Dashboard, shot

pytestmark = pytest.mark.e2e

ADDRESS = {"address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"}}


def tag() -> str:
    return "zq" + uuid.uuid4().hex[:8]


def place(api: httpx.Client, who: str, *, channel: str = "web", confirm: bool = False, method: str = "cash_on_delivery",
          items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = {"channel": channel, "currency": "EUR", "customer": {"name": who, "phone": "+91 98450 12345"},
            "items": items or [{"sku": "TEE-RED-M", "name": "Red tee", "quantity": 2, "unit_price": "12.50"}]}
    placed = api.post("/orders", json=body)
    assert placed.status_code == 201, placed.text
    order: dict[str, Any] = placed.json()
    if confirm:
        ref = order["id"]
        api.put(f"/orders/{ref}/address", json=ADDRESS).raise_for_status()
        api.put(f"/orders/{ref}/payment-method", json={"method": method}).raise_for_status()
        order = api.put(f"/orders/{ref}/customer-note", json={"skip": True}).raise_for_status().json()
    return order


def row(page: Any, number: int) -> Any:
    return page.locator(f'tr[data-number="{number}"]')


def search(page: Any, word: str) -> None:
    page.get_by_label("Search").fill(word)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(f"**q={word}**")


def test_a_new_order_appears_live_and_its_payment_indicator_turns(as_role: Any, dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = as_role("staff")
    expect(page.get_by_role("heading", name="Orders")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-live", "on")
    with dashboard.api() as api:
        order = place(api, f"Asha {tag()}", confirm=False)
        the_row = row(page, order["number"])
        expect(the_row).to_be_visible(timeout=20_000)  # no reload: the live stream brought it
        expect(page.locator("#toasts")).to_contain_text(f"#{order['number']}")
        expect(the_row.locator(".pay")).not_to_have_class("pay paid")
        shot(page, "orders-new-order-live")
        ref = order["id"]
        api.put(f"/orders/{ref}/address", json=ADDRESS).raise_for_status()
        api.put(f"/orders/{ref}/customer-note", json={"skip": True}).raise_for_status()
        link = None
        for _ in range(60):
            response = api.post(f"/orders/{ref}/payments/link")
            if response.status_code == 200:
                link = response.json()
                break
            page.wait_for_timeout(250)
        assert link is not None, "payments never learnt of the order"
    paid = httpx.post(f"{dashboard.env['OMS_SANDBOX_PROVIDER_URL']}/v1/payment_links/{link['link_id']}/pay",
                      json={"card_number": "4242424242424242"}, headers={"Idempotency-Key": str(uuid.uuid4())},
                      timeout=30)
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
    expect(the_row.locator(".pay.paid")).to_be_visible(timeout=20_000)
    expect(the_row.locator(".pay")).to_contain_text("Paid")
    shot(page, "orders-payment-turned")


def test_sort_and_filter_change_the_rows(as_role: Any, dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    word = tag()
    with dashboard.api() as api:
        first = place(api, f"Ravi {word}", channel="whatsapp")
        second = place(api, f"Mina {word}", channel="web")
    page = as_role("staff")
    search(page, word)
    numbers = page.locator("tbody tr")
    expect(numbers).to_have_count(2)
    assert numbers.nth(0).get_attribute("data-number") == str(second["number"])  # newest first
    page.get_by_label("Sort by").select_option("placed_at:asc")
    page.wait_for_url("**direction=asc**")
    expect(page.locator("tbody tr").first).to_have_attribute("data-number", str(first["number"]))
    page.get_by_label("Channel").select_option("whatsapp")
    page.wait_for_url("**channel=whatsapp**")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(row(page, first["number"])).to_contain_text("whatsapp")
    page.get_by_label("Payment").select_option("paid")
    expect(page.get_by_text("No orders match these filters.")).to_be_visible()
    shot(page, "orders-filtered")


def test_a_saved_view_is_picked_back(as_role: Any, dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    word = tag()
    with dashboard.api() as api:
        whatsapp = place(api, f"Lena {word}", channel="whatsapp")
        place(api, f"Omar {word}", channel="web")
    page = as_role("staff")
    search(page, word)
    page.get_by_label("Channel").select_option("whatsapp")
    page.wait_for_url("**channel=whatsapp**")
    expect(page.locator("tbody tr")).to_have_count(1)
    page.get_by_role("button", name="Save view").click()
    page.get_by_label("Name").fill(f"WhatsApp {word}")
    page.get_by_role("button", name="Save view").last.click()
    expect(page.locator("#toasts")).to_contain_text(f"WhatsApp {word}")
    page.goto("/#/orders")
    expect(page.locator("tbody tr").first).to_be_visible()
    # another member of the team sees it too
    other = as_role("owner")
    other.get_by_label("Saved views").select_option(label=f"WhatsApp {word}")
    other.wait_for_url("**channel=whatsapp**")
    expect(other.locator("tbody tr")).to_have_count(1)
    expect(row(other, whatsapp["number"])).to_be_visible()
    expect(other.get_by_label("Channel")).to_have_value("whatsapp")
    expect(other.get_by_label("Search")).to_have_value(word)


def test_the_csv_export_downloads_the_filtered_rows(as_role: Any, dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    word = tag()
    with dashboard.api() as api:
        orders = [place(api, f"Csv {word} {i}", items=[{"sku": "MUG", "name": "Mug", "quantity": 3,
                                                          "unit_price": "4.35"}]) for i in range(3)]
    page = as_role("viewer")
    search(page, word)
    expect(page.locator("tbody tr")).to_have_count(3)
    with page.expect_download() as info:
        page.get_by_role("button", name="Export CSV").click()
    text = Path(info.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(int(r["number"]) for r in rows) == sorted(o["number"] for o in orders)
    assert {r["total"] for r in rows} == {orders[0]["totals"]["total"]}  # exact, as the API says it
    assert all(word in r["customer_name"] for r in rows)
    expect(page.get_by_text("Exported 3 orders.")).to_be_visible()


def test_bulk_approve_asks_first_then_approves_each(as_role: Any, dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    word = tag()
    with dashboard.api() as api:
        orders = [place(api, f"Bulk {word} {i}", confirm=True) for i in range(2)]
    page = as_role("staff")
    search(page, word)
    for o in orders:
        expect(row(page, o["number"])).to_contain_text("Confirmed")
        row(page, o["number"]).get_by_role("checkbox").check()
    expect(page.get_by_role("region", name="Selected orders")).to_contain_text("2 selected")
    page.get_by_role("button", name="Approve", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"#{orders[0]['number']}")
    dialog.get_by_role("button", name="Cancel").click()
    expect(row(page, orders[0]["number"])).to_contain_text("Confirmed")  # nothing happened
    page.get_by_role("button", name="Approve", exact=True).click()
    shot(page, "orders-bulk-approve-confirm")
    page.get_by_role("dialog").get_by_role("button", name="Approve orders").click()
    for o in orders:
        expect(row(page, o["number"])).to_contain_text("Approved")
    with dashboard.api() as api:
        assert {api.get(f"/orders/{o['id']}").json()["stage"] for o in orders} == {"approved"}


def test_a_viewer_is_offered_no_bulk_action(as_role: Any, dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    word = tag()
    with dashboard.api() as api:
        order = place(api, f"View {word}", confirm=True)
    page = as_role("viewer")
    search(page, word)
    row(page, order["number"]).get_by_role("checkbox").check()
    bar = page.get_by_role("region", name="Selected orders")
    expect(bar).to_contain_text("1 selected")
    expect(bar.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Save view")).to_have_count(0)


def ship(api: httpx.Client, order_id: str, body: dict[str, Any]) -> None:
    """A manual shipment, once fulfillment has heard the order is approved (it learns by events)."""
    for _ in range(80):
        made = api.post(f"/orders/{order_id}/shipments", json={**body, "shipping_point": "local"})
        if made.status_code == 201:
            return
        assert made.status_code in (409, 503), made.text
        time.sleep(0.25)
    raise AssertionError(f"no shipment: {made.text}")


def test_packing_slips_are_one_pdf_with_a_page_per_shipment(as_role: Any, dashboard: Dashboard) -> None:
    from playwright.sync_api import expect
    from pypdf import PdfReader

    word = tag()
    items = [{"sku": "SLIP-A", "name": "Slip A", "quantity": 1, "unit_price": "5.00"},
             {"sku": "SLIP-B", "name": "Slip B", "quantity": 1, "unit_price": "6.00"}]
    with dashboard.api() as api:
        orders = [place(api, f"Slip {word} {i}", confirm=True, items=items) for i in range(2)]
        for o in orders:
            api.post(f"/orders/{o['id']}/transitions", json={"to": "approved"}).raise_for_status()
        # the first order goes in two parcels, the second in one: three slips
        ship(api, orders[0]["id"], {"lines": [{"line": "1", "quantity": 1}]})
        ship(api, orders[0]["id"], {"lines": [{"line": "2", "quantity": 1}]})
        ship(api, orders[1]["id"], {})
    page = as_role("staff")
    search(page, word)
    for o in orders:
        row(page, o["number"]).get_by_role("checkbox").check()
    with page.expect_download() as info:
        page.get_by_role("button", name="Packing slips (PDF)").click()
    reader = PdfReader(info.value.path())
    assert len(reader.pages) == 3
    texts = [p.extract_text() for p in reader.pages]
    assert f"#{orders[0]['number']}" in texts[0] and f"#{orders[1]['number']}" in texts[2]
    assert "Slip A" in texts[0] and "Slip B" in texts[1]
    expect(page.locator("tbody tr")).to_have_count(2)
