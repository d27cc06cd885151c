"""The settings pages in a real browser: notification settings saved at once, a template edited with a live
preview against a real order (and the API's problem next to the field), stock set and adjusted with reasons and
their movements, staff users and API keys managed by the owner, and a viewer who is offered no changes."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.browser.conftest import Dashboard, shot

pytestmark = pytest.mark.e2e


def _place(dashboard: Dashboard, name: str) -> dict[str, Any]:
    with dashboard.api() as api:
        answer = api.post("/orders", json={
            "channel": "web", "currency": "EUR", "customer": {"name": name, "email": "preview@example.com"},
            "items": [{"sku": "PRV-1", "name": "Preview scarf", "quantity": 1, "unit_price": "31.00"}]})
    assert answer.status_code == 201, answer.text
    order: dict[str, Any] = answer.json()
    return order


def test_a_notification_setting_is_saved_at_once(as_role: Any, dashboard: Dashboard) -> None:
    page = as_role("owner")
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    received = page.locator('fieldset[data-kind="payment_received"]')
    expect(received.get_by_label("On")).to_be_checked()
    received.get_by_label("On").uncheck()
    expect(page.get_by_role("status").filter(has_text="Saved: Payment received.")).to_be_visible()

    stages = page.locator('fieldset[data-kind="order_stage_changed"]')
    stages.get_by_label("Approved").check()
    expect(page.get_by_role("status").filter(has_text="Saved: Order status changed.")).to_be_visible()
    received.get_by_label("Automatic (the order's channel)").uncheck()
    received.get_by_label("SMS").check()
    expect(page.get_by_role("status").filter(has_text="Saved: Payment received.")).to_be_visible()
    page.get_by_label("Store e-mail (new-order e-mails)").fill("orders@shop.example")
    page.get_by_label("Store e-mail (new-order e-mails)").press("Tab")
    expect(page.get_by_role("status").filter(has_text="Saved: store e-mail.")).to_be_visible()

    with dashboard.api() as api:
        settings = api.get("/notifications/settings").json()
    kinds = {k["kind"]: k for k in settings["kinds"]}
    assert kinds["payment_received"]["enabled"] is False
    assert kinds["payment_received"]["channels"] == ["sms"]
    assert "approved" in kinds["order_stage_changed"]["stages"]
    assert settings["store_email"] == "orders@shop.example"

    page.reload()  # what the page shows after a reload is what was saved
    received = page.locator('fieldset[data-kind="payment_received"]')
    expect(received.get_by_label("On")).not_to_be_checked()
    expect(received.get_by_label("SMS")).to_be_checked()
    expect(page.locator('fieldset[data-kind="order_stage_changed"]').get_by_label("Approved")).to_be_checked()
    expect(page.get_by_label("Store e-mail (new-order e-mails)")).to_have_value("orders@shop.example")
    shot(page, "settings-notifications")


def _open_template(page: Any, kind_label: str, kind: str) -> None:
    page.goto("/#/settings/templates")
    page.get_by_label("Kind").select_option(kind)
    page.get_by_label("Channel").select_option("email")
    page.get_by_label("Language").select_option("en")
    page.get_by_role("button", name=f"Edit {kind_label} E-mail en").click()


def test_template_preview_renders_a_real_order(as_role: Any, dashboard: Dashboard) -> None:
    order = _place(dashboard, "Priya Preview")
    page = as_role("owner")
    _open_template(page, "Payment failed", "payment_failed")
    page.get_by_label("Order number for the preview").fill(str(order["number"]))
    page.get_by_label("Text (plain part)").fill("Dear {{ customer.name }}, order {{ order.number }} is waiting.")
    out = page.locator(".settings-preview-out")
    expect(out).to_contain_text(f"Dear Priya Preview, order {order['number']} is waiting.")
    expect(out).to_contain_text(f"With order #{order['number']}")
    shot(page, "settings-template-preview")

    page.get_by_label("Order number for the preview").fill("999999")  # nobody placed it: the API says so
    expect(out.locator(".problem")).to_be_visible()


def test_a_template_with_an_unknown_variable_is_refused_next_to_the_field(as_role: Any, dashboard: Dashboard) -> None:
    _place(dashboard, "Tara Template")
    page = as_role("owner")
    _open_template(page, "Refund", "refund_completed")
    text = page.get_by_label("Text (plain part)")
    text.fill("Your refund of {{ amont }} is on its way.")
    page.get_by_role("button", name="Save template").click()
    expect(text).to_have_attribute("aria-invalid", "true")
    error = page.locator('[name="text"] + .field-error')
    expect(error).to_contain_text("unknown variable 'amont'")
    shot(page, "settings-template-error")
    with dashboard.api() as api:  # nothing was saved
        stored = api.get("/notifications/templates/refund_completed/email/en").json()
    assert stored["is_default"] is True and "amont" not in stored["text"]

    text.fill("Your refund of {{ amount }} is on its way, {{ customer.name }}.")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    expect(page.locator(".field-error")).to_have_count(0)
    with dashboard.api() as api:
        stored = api.get("/notifications/templates/refund_completed/email/en").json()
    assert stored["is_default"] is False and stored["text"].startswith("Your refund of {{ amount }}")

    page.get_by_role("button", name="Reset to default").click()
    page.get_by_role("dialog").get_by_role("button", name="Reset").click()
    expect(page.get_by_text("The shipped default.", exact=True)).to_be_visible()
    with dashboard.api() as api:
        assert api.get("/notifications/templates/refund_completed/email/en").json()["is_default"] is True


def test_stock_is_set_and_adjusted_with_reasons_and_the_movements_show(as_role: Any, dashboard: Dashboard) -> None:
    page = as_role("staff")
    page.goto("/#/settings/stock")
    page.get_by_role("button", name="Set stock of a SKU").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("SKU").fill("UI-LAMP-01")
    dialog.get_by_label("Units on hand (counted)").fill("25")
    dialog.get_by_role("button", name="Set stock").click()  # no reason: the API names the field
    expect(dialog.locator('[name="reason"] + .field-error')).to_be_visible()
    dialog.get_by_label("Reason").fill("stock take in March")
    dialog.get_by_role("button", name="Set stock").click()
    expect(page.get_by_role("dialog")).to_have_count(0)

    row = page.locator('tr[data-sku="UI-LAMP-01"][data-location="main"]')
    expect(row.locator("td.num").nth(0)).to_have_text("25")
    history = page.locator(".settings-history")
    expect(history.get_by_role("heading", name="Movements of UI-LAMP-01")).to_be_visible()
    expect(history.locator("tbody tr").first).to_contain_text("stock take in March")
    expect(history.locator("tbody tr").first).to_contain_text("+25")
    expect(history.locator("tbody tr").first).to_contain_text("Staff Tester")

    row.get_by_role("button", name="Adjust UI-LAMP-01 at main").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Units to add (negative to remove)").fill("-3")
    dialog.get_by_label("Reason").fill("damaged in the shop")
    dialog.get_by_role("button", name="Adjust stock").click()
    expect(row.locator("td.num").nth(0)).to_have_text("22")
    expect(history.locator("tbody tr").first).to_contain_text("damaged in the shop")
    expect(history.locator("tbody tr").first).to_contain_text("-3")
    expect(history.locator("tbody tr")).to_have_count(2)

    page.get_by_label("Search SKU").fill("lamp")
    expect(page.locator("tbody tr[data-sku]")).to_have_count(1)
    shot(page, "settings-stock")
    with dashboard.api() as api:
        assert api.get("/stock/UI-LAMP-01").json()["on_hand"] == 22


def test_owner_adds_a_staff_user_who_can_then_sign_in(as_role: Any, dashboard: Dashboard) -> None:
    page = as_role("owner")
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Staff users").click()
    expect(page.get_by_role("heading", name="Staff users")).to_be_visible()
    page.get_by_role("button", name="Add staff user").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("Nadia New")
    dialog.get_by_label("E-mail").fill("nadia.new@shop.example")
    dialog.get_by_label("Role").select_option("viewer")
    dialog.get_by_role("button", name="Add user").click()
    secret = page.get_by_role("dialog").locator(".settings-secret")
    expect(secret).to_be_visible()  # a generated password, shown once
    password = secret.inner_text().strip()
    page.get_by_role("dialog").get_by_role("button", name="Done").click()

    row = page.locator('tr[data-email="nadia.new@shop.example"]')
    expect(row).to_contain_text("Nadia New")
    expect(row.get_by_label("Role of Nadia New")).to_have_value("viewer")
    row.get_by_label("Role of Nadia New").select_option("staff")
    expect(page.get_by_role("status").filter(has_text="Nadia New is now staff")).to_be_visible()

    with httpx.Client(base_url=dashboard.api_base, timeout=20) as client:
        signed = client.post("/session", json={"email": "nadia.new@shop.example", "password": password})
        assert signed.status_code in (200, 201, 204), signed.text
        me = client.get("/session").json()
    assert me["role"] == "staff" and me["name"] == "Nadia New"

    row.get_by_role("button", name="Disable Nadia New").click()
    page.get_by_role("dialog").get_by_role("button", name="Disable").click()
    expect(row).to_contain_text("disabled")
    with httpx.Client(base_url=dashboard.api_base, timeout=20) as client:
        refused = client.post("/session", json={"email": "nadia.new@shop.example", "password": password})
    assert refused.status_code in (401, 403)
    shot(page, "settings-staff")


def test_owner_creates_an_api_key_shown_once_and_revokes_it(as_role: Any, dashboard: Dashboard) -> None:
    page = as_role("owner")
    page.goto("/#/settings/apikeys")
    page.get_by_role("button", name="Create API key").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name (who or what uses it)").fill("Warehouse scanner")
    dialog.get_by_label("Role").select_option("staff")
    dialog.get_by_role("button", name="Create key").click()
    secret = page.get_by_role("dialog").locator(".settings-secret")
    expect(secret).to_be_visible()
    key = secret.inner_text().strip()
    page.get_by_role("dialog").get_by_role("button", name="Done").click()
    expect(page.get_by_role("row", name=re.compile("Warehouse scanner"))).to_contain_text("staff")
    assert key not in page.content()  # the key itself is not shown again

    def status() -> int:
        with httpx.Client(base_url=dashboard.api_base, headers={"Authorization": f"Bearer {key}"}, timeout=20) as c:
            return c.get("/orders?limit=1").status_code

    assert status() == 200
    page.get_by_role("button", name="Revoke Warehouse scanner").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("row", name=re.compile("Warehouse scanner"))).to_contain_text("revoked")
    assert status() == 401


def test_a_viewer_is_offered_no_changes_in_settings(as_role: Any, dashboard: Dashboard) -> None:
    _place(dashboard, "Vera Viewer")
    with dashboard.api() as api:
        assert api.put("/stock/VIEW-SKU-1", json={"on_hand": 5, "reason": "first count"}).status_code == 200
    page = as_role("viewer")
    page.goto("/#/settings/notifications")
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    nav = page.get_by_role("navigation", name="Settings")
    expect(nav.get_by_role("link", name="Stock")).to_be_visible()
    expect(nav.get_by_role("link", name="Staff users")).to_have_count(0)
    expect(nav.get_by_role("link", name="API keys")).to_have_count(0)
    expect(page.locator('fieldset[data-kind="order_placed"]').get_by_label("On")).to_be_disabled()
    expect(page.get_by_label("Store e-mail (new-order e-mails)")).to_be_disabled()

    page.goto("/#/settings/templates")
    page.get_by_role("button", name="Open Order placed E-mail en").click()
    expect(page.get_by_label("Text (plain part)")).to_be_visible()
    expect(page.get_by_role("button", name="Save template")).to_have_count(0)
    expect(page.get_by_role("button", name="Reset to default")).to_have_count(0)

    page.goto("/#/settings/stock")
    expect(page.get_by_role("heading", name="Stock")).to_be_visible()
    expect(page.get_by_role("button", name="History of VIEW-SKU-1")).to_be_visible()  # a viewer may look
    expect(page.get_by_role("button", name="Set stock of a SKU")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile(r"^(Set|Adjust) "))).to_have_count(0)
    shot(page, "settings-viewer")
