"""The dashboard in a real browser: the whole system as ``oms run`` starts it (on a database, vhost and ports of
its own), staff users of each role, and Debian's chromium driven by Playwright (no browser download).

Screenshots of every test go to ``test-artifacts/screenshots/`` (``OMS_TEST_ARTIFACTS`` to change it): a test
calls ``shot(page, "name")``, and a failing test's last page is saved too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Servers, _create_vhost, _delete_vhost, _vhost_url
from tests.e2e.conftest import free_port
from tests.e2e.test_oms_run_restarts import Output

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
OMS = [sys.executable, "-m", "oms.cli"]
ARTIFACTS = Path(os.environ.get("OMS_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
PASSWORD = "correct horse battery staple"
ROLES = ("owner", "staff", "viewer")


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no chromium on this machine: install Debian's `chromium` (the CI script does)")


@dataclass
class Dashboard:
    base: str  # http://127.0.0.1:<port>
    env: dict[str, str]
    api_key: str
    output: Output

    @property
    def api_base(self) -> str:
        return f"{self.base}/api/v1"

    def api(self) -> httpx.Client:
        """The HTTP API as a machine calls it (the development API key)."""
        return httpx.Client(base_url=self.api_base, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=20)

    def email(self, role: str) -> str:
        return f"{role}@shop.example"


@pytest.fixture(scope="session")
def dashboard(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    import psycopg

    name = f"{servers.vhost}_ui_{uuid.uuid4().hex[:6]}"
    _create_vhost(servers.amqp_base_url, name)
    database_url = servers.database_url.rsplit("/", 1)[0] + "/" + name
    state = tmp_path_factory.mktemp("ui-state")
    ports = {k: free_port() for k in ("http", "pay", "carrier", "msg", "smtp", "mailhttp")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OMS_")},
        "OMS_DATABASE_URL": database_url,
        "OMS_AMQP_URL": _vhost_url(servers.amqp_base_url, name),
        "OMS_STATE_DIR": str(state),
        "OMS_HTTP_HOST": "127.0.0.1",
        "OMS_HTTP_PORT": str(ports["http"]),
        "OMS_PUBLIC_URL": f"http://127.0.0.1:{ports['http']}",
        "OMS_SANDBOX_PORT": str(ports["pay"]),
        "OMS_SANDBOX_PROVIDER_URL": f"http://127.0.0.1:{ports['pay']}",
        "OMS_SANDBOX_CARRIER_PORT": str(ports["carrier"]),
        "OMS_CARRIER_URL": f"http://127.0.0.1:{ports['carrier']}",
        "OMS_SANDBOX_MESSAGING_PORT": str(ports["msg"]),
        "OMS_SMS_URL": f"http://127.0.0.1:{ports['msg']}",
        "OMS_WHATSAPP_URL": f"http://127.0.0.1:{ports['msg']}",
        "OMS_MAIL_CATCHER_SMTP_PORT": str(ports["smtp"]),
        "OMS_MAIL_CATCHER_HTTP_PORT": str(ports["mailhttp"]),
        "OMS_SMTP_PORT": str(ports["smtp"]),
        "OMS_RETRY_DELAYS": "1,1,1",
        # The sandbox's own receipts come a minute apart, so a test sends the one it wants when it wants it.
        "OMS_SANDBOX_MESSAGING_RECEIPT_DELAY": "60",
        "PYTHONUNBUFFERED": "1",
        "PYTHONWARNINGS": "ignore",
        "COLUMNS": "100",
    }
    proc = None
    try:
        subprocess.run([*OMS, "migrate"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=180)
        for role in ROLES:
            subprocess.run([*OMS, "staff", "create", f"{role}@shop.example", "--name", f"{role.title()} Tester",
                            "--role", role, "--password", PASSWORD],
                           cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
        proc = subprocess.Popen([*OMS, "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        out = Output(proc.stdout)
        out.wait_for("OMS is running", timeout=120)
        key = (state / "dev-api-key").read_text().strip()
        yield Dashboard(f"http://127.0.0.1:{ports['http']}", env, key, out)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        _delete_vhost(servers.amqp_base_url, name)
        with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread while it is started, and
    # the e2e tests that come after the browser modules call asyncio.run().
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield b
        b.close()


def sign_in(browser: Any, dashboard: Dashboard, role: str, *, width: int = 1280, height: int = 900,
            bypass_csp: bool = False) -> Any:
    """A new page signed in as ``role`` through the sign-in form, on the orders page. ``bypass_csp``: only for
    a test that injects its own checking script (the accessibility test)."""
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=dashboard.base,
                                  bypass_csp=bypass_csp)
    context.route("**/*", lambda route: route.abort() if not route.request.url.startswith(dashboard.base)
                  and not route.request.url.startswith("data:") else route.continue_())  # nothing from outside
    page = context.new_page()
    page.goto("/")
    page.get_by_label("E-mail").fill(dashboard.email(role))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/#/orders**")
    return page


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def as_role(browser: Any, dashboard: Dashboard, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``as_role("staff")`` -> a signed-in page; every page is screenshotted at the end of the test."""
    pages: list[Any] = []

    def make(role: str, **kw: Any) -> Any:
        page = sign_in(browser, dashboard, role, **kw)
        pages.append(page)
        return page

    yield make
    for i, page in enumerate(pages):
        try:
            shot(page, f"{request.node.name}-{i}")
        finally:
            page.context.close()
