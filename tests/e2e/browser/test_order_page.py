"""The order page in a real browser (issue #13): what staff see on #/orders/<number> and what its buttons do.

Orders are placed and prepared through the HTTP API as a shop would (the development API key); everything a
test asserts about the page is what a person sees: texts, the buttons offered, a status that turns live.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.browser.conftest import Dashboard, shot
from tests.e2e.conftest import until

pytestmark = pytest.mark.e2e

ADDRESS = {"address": {"line1": "12 Parcel Lane", "city": "Berlin", "postal_code": "10115", "country": "DE"}}


def sku(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6].upper()}"


def place(api: httpx.Client, items: list[dict[str, Any]], *, ready: bool = True, phone: str | None = None,
          shipping: str = "4.90") -> dict[str, Any]:
    """An order placed by the shop; ``ready``: address, cash on delivery and a skipped note (so confirmed)."""
    customer: dict[str, Any] = {"name": "Greta Page", "email": f"greta-{uuid.uuid4().hex[:6]}@example.com"}
    if phone:
        customer = {"name": "Greta Page", "phone": phone}
    placed = api.post("/orders", json={"channel": "web", "currency": "EUR", "shipping": shipping, "items": items,
                                       "customer": customer})
    assert placed.status_code == 201, placed.text
    ref = placed.json()["id"]
    if ready:
        api.put(f"/orders/{ref}/address", json=ADDRESS).raise_for_status()
        api.put(f"/orders/{ref}/payment-method", json={"method": "cash_on_delivery"}).raise_for_status()
        api.put(f"/orders/{ref}/customer-note", json={"skip": True}).raise_for_status()
    return dict(api.get(f"/orders/{ref}").json())


def tee_and_mug() -> list[dict[str, Any]]:
    return [{"sku": sku("TEE"), "name": "Red tee", "quantity": 2, "unit_price": "12.50"},
            {"sku": sku("MUG"), "name": "Blue mug", "quantity": 1, "unit_price": "9.99"}]


def approved(api: httpx.Client, items: list[dict[str, Any]]) -> dict[str, Any]:
    order = place(api, items)
    assert order["stage"] == "confirmed", order
    until(lambda: api.get(f"/orders/{order['id']}/fulfillment").status_code == 200, "fulfillment to know the order")
    moved = api.post(f"/orders/{order['id']}/transitions", json={"to": "approved"})
    assert moved.status_code == 200, moved.text
    until(lambda: api.get(f"/orders/{order['id']}/fulfillment").json().get("can_fulfill"),
          "fulfillment to see the order approved")
    return dict(moved.json())


def paid(api: httpx.Client, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A cash-on-delivery order whose money was received in full."""
    order = place(api, items)
    until(lambda: api.get(f"/orders/{order['id']}/payments").status_code == 200, "payments to know the order")
    got = api.post(f"/orders/{order['id']}/payments/manual",
                   json={"amount": order["totals"]["total"], "reference": f"till-{uuid.uuid4().hex[:6]}"})
    assert got.status_code == 200, got.text
    until(lambda: api.get(f"/orders/{order['id']}/payments").json()["status"] == "paid", "the payment")
    return order


def open_order(page: Any, order: dict[str, Any]) -> None:
    page.goto(f"/#/orders/{order['number']}")
    page.get_by_role("heading", name=f"Order {order['display_number']}").wait_for()


def offered_moves(page: Any) -> set[str]:
    return set(page.locator(".stage-moves button").evaluate_all("els => els.map(e => e.dataset.stage)"))


def stage_row(api: httpx.Client, stage: str) -> set[str]:
    table = api.get("/stages").json()
    return set(next(row for row in table["stages"] if row["stage"] == stage)["allowed"])


def confirm(page: Any, button: str) -> None:
    """The confirmation popup that every irreversible action opens first."""
    dialog = page.locator("dialog[open]").last
    dialog.get_by_text("Please confirm").wait_for()
    dialog.get_by_role("button", name=button).click()


# ------------------------------------------------------------------------------------------- stages
def test_confirm_then_approve_offering_exactly_the_moves_the_stage_machine_allows(
    dashboard: Dashboard, as_role: Any
) -> None:
    with dashboard.api() as api:
        order = place(api, tee_and_mug(), ready=False)
        assert order["stage"] == "placed"
        page = as_role("staff")
        open_order(page, order)
        # placed: the order's own allowed moves (the timer alone abandons), each one in the stage table's row
        assert offered_moves(page) == set(order["allowed_transitions"])
        assert offered_moves(page) <= stage_row(api, "placed") and "abandoned" not in offered_moves(page)

        page.get_by_role("button", name="Confirm", exact=True).click()
        confirm(page, "Confirm")
        page.locator("#order-stage", has_text="Confirmed").wait_for()
        page.locator('.stage-moves button[data-stage="approved"]').wait_for()
        assert offered_moves(page) == stage_row(api, "confirmed")  # the table's row, exactly
        assert until(lambda: api.get(f"/orders/{order['id']}").json()["stage"] == "confirmed", "confirmed")

        page.get_by_role("button", name="Approve", exact=True).click()
        confirm(page, "Approve")
        page.locator("#order-stage", has_text="Approved").wait_for()
        page.locator('.stage-moves button[data-stage="processed"]').wait_for()
        assert offered_moves(page) == stage_row(api, "approved")
        assert api.get(f"/orders/{order['id']}").json()["stage"] == "approved"
        history = page.locator("#order-timeline")
        history.get_by_text("Approved", exact=False).first.wait_for()
        shot(page, "order-approved")


def test_a_cancel_asks_first_and_nothing_changes_when_staff_say_no(dashboard: Dashboard, as_role: Any) -> None:
    with dashboard.api() as api:
        order = place(api, tee_and_mug())
        page = as_role("staff")
        open_order(page, order)
        page.get_by_role("button", name="Cancel order").click()
        dialog = page.locator("dialog[open]").last
        dialog.get_by_text("Please confirm").wait_for()
        dialog.get_by_role("button", name="Cancel", exact=True).click()  # "no"
        page.locator("dialog[open]").wait_for(state="detached")
        assert api.get(f"/orders/{order['id']}").json()["stage"] == "confirmed"
        assert page.locator("#order-stage").inner_text() == "Confirmed"


# ------------------------------------------------------------------------------------------- fulfillment
def test_fulfil_with_a_split_shipment(dashboard: Dashboard, as_role: Any) -> None:
    with dashboard.api() as api:
        items = tee_and_mug()
        order = approved(api, items)
        page = as_role("staff")
        open_order(page, order)
        panel = page.locator("#order-fulfillment")

        panel.get_by_role("button", name="Fulfil").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_label("Red tee", exact=False).fill("1")
        dialog.get_by_label("Blue mug", exact=False).fill("0")
        dialog.get_by_label("Carrier (optional)").fill("Own van")
        dialog.get_by_role("button", name="Create shipment").click()
        panel.locator(".shipment").first.wait_for()
        assert panel.locator(".shipment").count() == 1
        assert "1 × Red tee" in panel.locator(".shipment").first.inner_text()

        panel.get_by_role("button", name="Fulfil").click()  # still offered: units remain
        dialog = page.locator("dialog[open]")
        assert dialog.get_by_label("Red tee", exact=False).input_value() == "1"  # what is left
        dialog.get_by_role("button", name="Create shipment").click()
        until(lambda: panel.locator(".shipment").count() == 2, "the second shipment on the page")
        second = panel.locator(".shipment").nth(1).inner_text()
        assert "1 × Red tee" in second and "1 × Blue mug" in second

        view = until(lambda: (v := api.get(f"/orders/{order['id']}/fulfillment").json())["shipments"]
                     and len(v["shipments"]) == 2 and v, "two shipments")
        assert sorted((line["name"], line["quantity"]) for s in view["shipments"] for line in s["lines"]) == [
            ("Blue mug", 1), ("Red tee", 1), ("Red tee", 1)]
        page.locator("#order-fulfillment button", has_text="Fulfil").wait_for(state="detached")  # nothing left
        # each shipment offers exactly what its flags allow
        for s in view["shipments"]:
            card = panel.locator(f'.shipment[data-shipment="{s["number"]}"]')
            assert (card.get_by_role("button", name="Mark delivered").count() == 1) == s["can_mark_delivered"]
            assert (card.get_by_role("button", name="Cancel shipment").count() == 1) == s["can_cancel"]
            assert (card.get_by_role("button", name="Edit").count() == 1) == s["can_edit"]
        shot(page, "order-split-shipment")


def test_a_carrier_label_is_bought_from_a_chosen_rate_and_voided(dashboard: Dashboard, as_role: Any) -> None:
    with dashboard.api() as api:
        order = approved(api, [{"sku": sku("LAMP"), "name": "Desk lamp", "quantity": 1, "unit_price": "30.00"}])
        page = as_role("staff")
        open_order(page, order)
        panel = page.locator("#order-fulfillment")
        panel.get_by_role("button", name="Fulfil").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_label("Carrier label").check()
        dialog.get_by_label("Weight (g)").fill("900")
        dialog.get_by_role("button", name="Get rates").click()
        dialog.locator(".rates input[type=radio]").first.wait_for()
        dialog.get_by_role("button", name="Buy label").click()
        confirm(page, "Buy label")
        card = panel.locator(".shipment").first
        card.get_by_role("link", name="Print label").wait_for()
        [shipment] = api.get(f"/orders/{order['id']}/fulfillment").json()["shipments"]
        assert shipment["kind"] == "carrier" and shipment["tracking_number"] in card.inner_text()
        assert card.get_by_role("button", name="Edit").count() == 0  # only the carrier's tracking moves it

        card.get_by_role("button", name="Void label").click()
        confirm(page, "Void label")
        panel.locator('.shipment[data-status="canceled"]').wait_for()
        assert api.get(f"/shipments/{shipment['id']}").json()["status"] == "canceled"
        panel.get_by_role("button", name="Fulfil").wait_for()  # the units may be fulfilled again
        shot(page, "order-label-voided")


def test_a_manual_shipment_is_marked_delivered_and_a_return_recorded(dashboard: Dashboard, as_role: Any) -> None:
    with dashboard.api() as api:
        order = approved(api, [{"sku": sku("CUP"), "name": "Tea cup", "quantity": 2, "unit_price": "6.00"}])
        page = as_role("staff")
        open_order(page, order)
        panel = page.locator("#order-fulfillment")
        panel.get_by_role("button", name="Fulfil").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_label("Already handed over").check()
        dialog.get_by_role("button", name="Create shipment").click()
        card = panel.locator(".shipment").first
        card.get_by_role("button", name="Mark delivered").click()
        confirm(page, "Mark delivered")
        panel.locator('.shipment[data-status="delivered"]').wait_for()
        assert card.get_by_role("button", name="Mark delivered").count() == 0

        panel.get_by_role("button", name="Record a return").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_label("Units returned", exact=False).fill("1")
        dialog.get_by_role("button", name="Record return").click()
        confirm(page, "Record return")
        panel.get_by_text("1 × ", exact=False).last.wait_for()
        returns = api.get(f"/orders/{order['id']}/fulfillment").json()["returns"]
        assert [line["quantity"] for r in returns for line in r["lines"]] == [1]


# ------------------------------------------------------------------------------------------- refunds
def test_refund_part_with_the_live_preview_matching_the_api(dashboard: Dashboard, as_role: Any) -> None:
    with dashboard.api() as api:
        items = tee_and_mug()
        order = paid(api, items)
        page = as_role("staff")
        open_order(page, order)
        payments = page.locator("#order-payments")
        payments.locator('[data-fact="Status"]', has_text="paid").wait_for()

        payments.get_by_role("button", name="Refund").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_label("Red tee", exact=False).fill("1")
        dialog.get_by_label("Shipping (EUR)").fill("4.90")
        dialog.get_by_label("Adjustment fee kept (EUR)").fill("1.00")
        command = {"lines": {items[0]["sku"]: 1}, "shipping": "4.90", "adjustment_fee": "1.00"}
        expected = api.post(f"/orders/{order['id']}/refunds/preview", json=command).json()
        assert expected["ok"] and expected["total"] == "16.40"
        dialog.locator("#refund-amount", has_text=f"{expected['total']} EUR").wait_for()

        dialog.get_by_label("Red tee", exact=False).fill("3")  # more than ordered: the API's own words
        dialog.locator(".field-error").first.wait_for()
        too_many = api.post(f"/orders/{order['id']}/refunds/preview",
                            json={**command, "lines": {items[0]["sku"]: 3}}).json()
        assert dialog.locator(".field-error").first.inner_text() == too_many["errors"][0]["reason"]

        dialog.get_by_label("Red tee", exact=False).fill("1")
        dialog.locator("#refund-amount", has_text="16.40 EUR").wait_for()
        dialog.get_by_role("button", name="Refund").click()
        confirm(page, "Refund")
        payments.locator('[data-fact="Refunded"]', has_text="16.40 EUR").wait_for()
        summary = api.get(f"/orders/{order['id']}/payments").json()
        assert summary["refunded"] == "16.40" and summary["status"] == "partially_refunded"
        assert Decimal(summary["net_paid"]) == Decimal(order["totals"]["total"]) - Decimal("16.40")
        shot(page, "order-refunded")


def test_a_viewer_is_offered_no_refund_and_no_moves(dashboard: Dashboard, as_role: Any) -> None:
    with dashboard.api() as api:
        order = paid(api, tee_and_mug())
    page = as_role("viewer", width=390, height=844)  # on a phone
    open_order(page, order)
    page.locator("#order-payments").locator('[data-fact="Status"]', has_text="paid").wait_for()
    assert page.locator("#order-payments").get_by_role("button", name="Refund").count() == 0
    assert offered_moves(page) == set()
    assert page.get_by_role("button", name="Add note").count() == 0
    # the same page as staff offers it: the button is hidden by role, not missing
    staff = as_role("staff")
    open_order(staff, order)
    staff.locator("#order-payments").get_by_role("button", name="Refund").wait_for()


# ------------------------------------------------------------------------------------------- print, notes
def test_the_print_view_renders(dashboard: Dashboard, as_role: Any) -> None:
    with dashboard.api() as api:
        order = place(api, tee_and_mug())
    page = as_role("staff")
    open_order(page, order)
    with page.context.expect_page() as opened:
        page.locator("#order-print").get_by_role("link", name="Order details").click()
    printed = opened.value
    printed.wait_for_load_state()
    text = printed.locator("body").inner_text()
    assert str(order["number"]) in text and "Red tee" in text and "Blue mug" in text
    shot(printed, "order-print-details")
    with page.context.expect_page() as opened:
        page.locator("#order-print").get_by_role("link", name="Invoice").click()
    invoice = opened.value
    invoice.wait_for_load_state()
    assert "Red tee" in invoice.locator("body").inner_text()


def test_notes_are_added_edited_and_deleted(dashboard: Dashboard, as_role: Any) -> None:
    with dashboard.api() as api:
        order = place(api, tee_and_mug())
    page = as_role("staff")
    open_order(page, order)
    notes = page.locator("#order-notes")
    notes.get_by_label("New note").fill("Gift wrap, please")
    notes.get_by_role("button", name="Add note").click()
    notes.get_by_text("Gift wrap, please").wait_for()
    notes.get_by_role("button", name="Edit").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Note").fill("Gift wrap in blue")
    dialog.get_by_role("button", name="Save").click()
    notes.get_by_text("Gift wrap in blue").wait_for()
    notes.get_by_role("button", name="Delete").click()
    confirm(page, "Delete note")
    notes.get_by_text("No notes.").wait_for()


# ------------------------------------------------------------------------------------------- live messages
def test_a_message_delivery_status_turns_from_sent_to_delivered_live(dashboard: Dashboard, as_role: Any) -> None:
    phone = f"+49301{uuid.uuid4().int % 10**6:06d}"
    with dashboard.api() as api:
        order = place(api, tee_and_mug(), phone=phone, ready=False)  # one message: the order confirmation by SMS

        def sent() -> dict[str, Any] | None:
            items = api.get(f"/orders/{order['id']}/messages").json()["items"]
            return next((m for m in items if m["channel"] == "sms" and m["status"] == "sent"), None)

        message = until(sent, "the SMS to be sent", timeout=30)
        page = as_role("staff")
        open_order(page, order)
        page.evaluate("window.__notReloaded = true")
        message_id = message["id"]
        status = page.locator(f'#order-messages tr[data-message="{message_id}"] .message-status')
        status.filter(has_text="sent").wait_for()
        page.locator('body[data-live="on"]').wait_for()  # the page listens to the live alerts

        sandbox = f"http://127.0.0.1:{dashboard.env['OMS_SANDBOX_MESSAGING_PORT']}"
        receipt = httpx.post(f"{sandbox}/sandbox/receipts",
                             json={"message_id": message["provider_message_id"], "status": "delivered"}, timeout=15)
        assert receipt.status_code == 200, receipt.text

        status.filter(has_text="delivered").wait_for(timeout=20_000)
        assert page.evaluate("window.__notReloaded") is True  # turned in place, without a reload
        shot(page, "order-message-delivered")
