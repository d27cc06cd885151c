"""Signing in to the dashboard in a real browser: sign in and out, a wrong password shown in the API's own words
next to the field, the rate limit, and the server's refusals (a viewer's refund, a change without the CSRF
token) even when the request comes from the page's own code with its cookie; API keys keep working."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.browser.conftest import PASSWORD, Dashboard, shot

pytestmark = pytest.mark.e2e

REFUND = {"lines": {}, "shipping": "1.00", "reason": "browser test"}


def signed_out_page(browser: Any, dashboard: Dashboard) -> Any:
    context = browser.new_context(viewport={"width": 390, "height": 800}, base_url=dashboard.base)
    context.route("**/*", lambda route: route.abort() if not route.request.url.startswith(dashboard.base)
                  and not route.request.url.startswith("data:") else route.continue_())
    page = context.new_page()
    page.goto("/")
    page.get_by_role("button", name="Sign in").wait_for()
    return page


def call_api(page: Any, method: str, path: str, body: Any = None, *, csrf: bool = True) -> dict[str, Any]:
    """A request from the page's own code: api() of js/api.js (cookie and CSRF token), or a bare fetch
    with the cookie but no CSRF token."""
    return page.evaluate(
        """async ([method, path, body, csrf]) => {
            if (!csrf) {
              const res = await fetch(path, { method, credentials: "same-origin",
                headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
              return { status: res.status, problem: await res.json() };
            }
            const { api } = await import("/dashboard/static/js/api.js");
            try { return { status: 200, body: await api(method, path, body ?? undefined) }; }
            catch (e) { return { status: e.status, problem: e.problem, message: String(e) }; }
        }""",
        [method, path, body, csrf],
    )


def test_sign_in_shows_who_is_signed_in(as_role: Any) -> None:
    page = as_role("owner")
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_text("Owner Tester (owner)").wait_for()
    assert nav.get_by_role("button", name="Sign out").is_visible()
    shot(page, "signin-signed-in")


def test_wrong_password_is_explained_next_to_the_field(browser: Any, dashboard: Dashboard) -> None:
    page = signed_out_page(browser, dashboard)
    page.get_by_label("E-mail").fill(dashboard.email("staff"))
    page.get_by_label("Password").fill("not my password")
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#signin-password + .field-error")
    error.wait_for()
    assert error.inner_text() == "the e-mail address or password is not correct"
    assert page.get_by_label("Password").get_attribute("aria-invalid") == "true"
    assert page.get_by_role("alert").inner_text() == "The e-mail address or password is not correct."
    shot(page, "signin-wrong-password")
    # the right password then signs in
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/#/orders**")
    page.get_by_text("Staff Tester (staff)").wait_for()
    page.context.close()


def test_too_many_failures_are_refused_with_the_wait(browser: Any, dashboard: Dashboard) -> None:
    email = f"ratelimit-{uuid.uuid4().hex[:6]}@shop.example"
    with dashboard.api() as api:
        created = api.post("/staff", json={"email": email, "name": "Rate Limited", "role": "staff",
                                           "password": PASSWORD})
        assert created.status_code == 201, created.text
    page = signed_out_page(browser, dashboard)
    page.get_by_label("E-mail").fill(email)
    for _ in range(5):
        page.get_by_label("Password").fill("a wrong password")
        with page.expect_response("**/api/v1/session") as answer:
            page.get_by_role("button", name="Sign in").click()
        assert answer.value.status == 401
        expect(page.get_by_label("Password")).to_have_value("")  # the page has shown the answer and cleared it
    page.get_by_label("Password").fill(PASSWORD)  # even the right one, now
    with page.expect_response("**/api/v1/session") as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 429
    alert = page.get_by_role("alert")
    assert re.fullmatch(r"Too many failed sign-ins; try again in \d+ minutes\.", alert.inner_text())
    assert "#/signin" in page.url
    shot(page, "signin-rate-limited")
    page.context.close()


def test_sign_out_ends_the_session(as_role: Any) -> None:
    page = as_role("staff")
    with page.expect_response(lambda r: r.request.method == "DELETE" and r.url.endswith("/api/v1/session")) as out:
        page.get_by_role("button", name="Sign out").click()
    assert out.value.status == 204 or out.value.ok
    page.wait_for_url("**/#/signin")
    page.get_by_role("button", name="Sign in").wait_for()
    answer = call_api(page, "GET", "/api/v1/session")
    assert answer["status"] == 401, answer
    page.goto("/#/orders")  # a signed-out visitor is sent to the sign-in form
    page.wait_for_url("**/#/signin?next=%23%2Forders")
    page.get_by_label("Password").wait_for()


def test_the_server_refuses_a_viewers_refund_even_from_the_page(as_role: Any, dashboard: Dashboard) -> None:
    viewer = as_role("viewer")
    staff = as_role("staff")
    refused = call_api(viewer, "POST", "/api/v1/orders/999999/refunds", REFUND)
    assert refused["status"] == 403
    assert refused["problem"]["permission"] == "payments.refund"
    assert "viewer" in refused["problem"]["detail"]
    # the same request from a staff member passes the role check (then the order itself decides: there is no such order)
    assert call_api(staff, "POST", "/api/v1/orders/999999/refunds", REFUND)["status"] == 404
    # a viewer still reads
    assert call_api(viewer, "GET", "/api/v1/orders")["status"] == 200


def test_a_change_without_the_csrf_token_is_refused(as_role: Any) -> None:
    page = as_role("staff")
    answer = call_api(page, "POST", "/api/v1/orders/999999/refunds", REFUND, csrf=False)
    assert answer["status"] == 403
    assert "X-CSRF-Token" in answer["problem"]["detail"]


def test_api_keys_still_work(dashboard: Dashboard) -> None:
    with dashboard.api() as api:
        me = api.get("/session").json()
        assert me["kind"] == "api_key" and me["role"] == "owner"
        assert api.get("/orders").status_code == 200
