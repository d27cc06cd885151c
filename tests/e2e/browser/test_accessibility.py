"""The dashboard's pages against WCAG 2 A and AA rules (axe-core, run in the page by the real browser).

Every page a member of staff uses is checked signed in, with data on it: labels, names of buttons and links,
contrast, landmarks, ARIA use. A violation of impact "serious" or "critical" fails the test with axe's own
description of what and where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser.conftest import Dashboard, shot

pytestmark = pytest.mark.e2e

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
PAGES = [
    ("orders", "#/orders"),
    ("new-order", "#/orders/new"),
    ("settings-notifications", "#/settings/notifications"),
    ("settings-templates", "#/settings/templates"),
    ("settings-stock", "#/settings/stock"),
    ("settings-staff", "#/settings/staff"),
    ("settings-apikeys", "#/settings/apikeys"),
]


def violations(page: Any) -> list[str]:
    # The dashboard's CSP allows no inline script: the test's context bypasses it to inject axe (only here).
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})")
    found = []
    for v in result["violations"]:
        if v["impact"] in ("serious", "critical"):
            where = "; ".join(" ".join(n["target"]) for n in v["nodes"][:5])
            found.append(f"{v['id']} ({v['impact']}): {v['help']} at {where}")
    return found


@pytest.fixture(scope="module")
def an_order(dashboard: Dashboard) -> dict[str, Any]:
    with dashboard.api() as api:
        placed = api.post("/orders", json={
            "channel": "web", "currency": "EUR", "customer": {"name": "Ada Access", "email": "ada@example.com"},
            "items": [{"sku": "A11Y-1", "name": "Readable mug", "quantity": 2, "unit_price": "9.50"}],
            "shipping_address": {"line1": "Rue 1", "city": "Lyon", "country": "FR"},
        })
        assert placed.status_code == 201, placed.text
        return dict(placed.json())


@pytest.mark.parametrize(("name", "path"), PAGES)
def test_every_page_meets_wcag_a_and_aa(as_role: Any, an_order: dict[str, Any], name: str, path: str) -> None:
    page = as_role("owner", bypass_csp=True)
    page.goto(f"/{path}")
    page.wait_for_load_state("networkidle")
    page.wait_for_selector("main h1")
    shot(page, f"a11y-{name}")
    assert violations(page) == []


def test_the_order_page_meets_wcag_a_and_aa(as_role: Any, an_order: dict[str, Any]) -> None:
    page = as_role("owner", bypass_csp=True)
    page.goto(f"/#/orders/{an_order['number']}")
    page.wait_for_load_state("networkidle")
    page.wait_for_selector("main h1")
    assert violations(page) == []


def test_the_sign_in_page_meets_wcag_a_and_aa(browser: Any, dashboard: Dashboard) -> None:
    context = browser.new_context(base_url=dashboard.base, bypass_csp=True)
    page = context.new_page()
    page.goto("/#/signin")
    page.wait_for_selector("main h1")
    try:
        assert violations(page) == []
    finally:
        context.close()
