"""Staff sign-in against a real Postgres: sessions and their cookies, CSRF, roles checked on the server, the
sign-in rate limit shared by every gateway process, staff users and API keys managed by owners, the
dashboard's security headers. The services are a stand-in that records calls and answers 404, so "allowed"
means the call reached the service and "refused" that it did not.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.auth import create_api_key
from services.gateway.settings import GatewaySettings
from services.gateway.staff import create_staff
from shared.errors import NotFound

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted((ROOT / "services" / "gateway" / "migrations").glob("*.sql"))
ADMIN_URL = os.environ.get("OMS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "correct horse battery staple"
REFUND = {"lines": {}, "shipping": "1.00", "reason": "test"}


class RecordingServices:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.connected = True

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        self.calls.append(f"{service}.{method}")
        raise NotFound("No such order.")


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    name = f"oms_stafftest_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"no Postgres: {exc}")
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path="/" + name))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA gateway")
            conn.execute("SET search_path = gateway")
            for migration in MIGRATIONS:
                conn.execute(migration.read_text())
            for role in ("owner", "staff", "viewer"):
                create_staff(conn, f"{role}@shop.example", f"{role.title()} Tester", role, PASSWORD)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def services() -> RecordingServices:
    return RecordingServices()


def make_client(database_url: str, services: RecordingServices) -> TestClient:
    settings = GatewaySettings(database_url=database_url, db_pool_size=4)
    return TestClient(create_app(settings, rpc=services), raise_server_exceptions=False)


@pytest.fixture()
def client(database_url: str, services: RecordingServices) -> Iterator[TestClient]:
    with make_client(database_url, services) as c:
        yield c


def sign_in(client: TestClient, role: str, password: str = PASSWORD) -> dict[str, str]:
    """Sign in (the client keeps the cookies); the headers a page sends with a change."""
    response = client.post("/api/v1/session", json={"email": f"{role}@shop.example", "password": password})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": client.cookies["oms_csrf"]}


def new_user(database_url: str, role: str) -> str:
    email = f"{role}-{uuid.uuid4().hex[:6]}@shop.example"
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_staff(conn, email, "Someone", role, PASSWORD)
    return email


# ------------------------------------------------------------------------------------------ sessions
def test_sign_in_sets_the_cookies_and_the_session_names_the_role(client: TestClient) -> None:
    response = client.post("/api/v1/session", json={"email": "Staff@Shop.Example", "password": PASSWORD})
    assert response.status_code == 200
    cookies = {c.split("=", 1)[0]: c.lower() for c in response.headers.get_list("set-cookie")}
    assert "httponly" in cookies["oms_session"] and "samesite=lax" in cookies["oms_session"]
    assert "httponly" not in cookies["oms_csrf"]
    me = client.get("/api/v1/session").json()
    assert me["kind"] == "staff" and me["email"] == "staff@shop.example" and me["role"] == "staff"
    assert "payments.refund" in me["permissions"] and "staff.manage" not in me["permissions"]


def test_wrong_password_and_unknown_email_get_the_same_answer_naming_the_password(client: TestClient) -> None:
    answers = [client.post("/api/v1/session", json={"email": email, "password": "not the password"})
               for email in ("owner@shop.example", "nobody@shop.example")]
    for response in answers:
        assert response.status_code == 401
        body = response.json()
        assert body["errors"][0]["field"] == "password"
        assert "not correct" in body["detail"]
    assert answers[0].json()["detail"] == answers[1].json()["detail"]
    assert "oms_session" not in client.cookies


def test_not_signed_in_is_401_and_signing_out_ends_the_session(client: TestClient) -> None:
    assert client.get("/api/v1/session").status_code == 401
    csrf = sign_in(client, "viewer")
    token = client.cookies["oms_session"]
    assert client.delete("/api/v1/session", headers=csrf).status_code == 204
    client.cookies.set("oms_session", token)  # the old cookie, replayed: the session is gone on the server
    assert client.get("/api/v1/session").status_code == 401


def test_a_change_without_the_csrf_token_is_refused(client: TestClient, services: RecordingServices) -> None:
    csrf = sign_in(client, "staff")
    missing = client.post("/api/v1/orders/1001/refunds", json=REFUND)
    wrong = client.post("/api/v1/orders/1001/refunds", json=REFUND, headers={"X-CSRF-Token": "guess"})
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert "X-CSRF-Token" in missing.json()["detail"]
    assert services.calls == []
    allowed = client.post("/api/v1/orders/1001/refunds", json=REFUND, headers=csrf)
    assert allowed.status_code == 404 and services.calls  # reached the service


def test_a_viewer_reads_but_cannot_refund(client: TestClient, services: RecordingServices) -> None:
    csrf = sign_in(client, "viewer")
    refused = client.post("/api/v1/orders/1001/refunds", json=REFUND, headers=csrf)
    assert refused.status_code == 403
    assert refused.json()["permission"] == "payments.refund"
    assert services.calls == []
    assert client.get("/api/v1/orders/1001").status_code == 404 and services.calls  # reading reached the service


# ------------------------------------------------------------------------------------------ rate limit
def test_sign_in_is_rate_limited_per_email_across_gateway_processes(database_url: str,
                                                                    services: RecordingServices) -> None:
    email = new_user(database_url, "staff")
    with make_client(database_url, services) as first, make_client(database_url, services) as second:
        for i in range(5):
            process = first if i % 2 else second
            answer = process.post("/api/v1/session", json={"email": email, "password": "wrong password!"})
            assert answer.status_code == 401
        for process in (first, second):  # the right password too: the limit is reached on every process
            limited = process.post("/api/v1/session", json={"email": email, "password": PASSWORD})
            assert limited.status_code == 429
            assert 0 < int(limited.headers["Retry-After"]) <= 900
            assert "try again" in limited.json()["detail"]
        # another person is not locked out by it
        other = first.post("/api/v1/session", json={"email": "owner@shop.example", "password": PASSWORD})
        assert other.status_code == 200


# ------------------------------------------------------------------------------------------ staff users
def test_owners_manage_staff_and_others_cannot(database_url: str, services: RecordingServices) -> None:
    with make_client(database_url, services) as owner, make_client(database_url, services) as staff:
        staff_csrf = sign_in(staff, "staff")
        assert staff.get("/api/v1/staff").status_code == 403
        assert staff.post("/api/v1/staff", json={"email": "x@shop.example", "name": "X", "role": "owner"},
                          headers=staff_csrf).status_code == 403
        csrf = sign_in(owner, "owner")
        created = owner.post("/api/v1/staff", json={"email": "new@shop.example", "name": "New", "role": "viewer"},
                             headers=csrf)
        assert created.status_code == 201
        user, password = created.json(), created.json()["password"]
        assert user["role"] == "viewer" and len(password) >= 10
        taken = owner.post("/api/v1/staff", json={"email": "NEW@shop.example", "name": "N", "role": "viewer"},
                           headers=csrf)
        assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "email"
        short = owner.post("/api/v1/staff", json={"email": "s@shop.example", "name": "S", "role": "viewer",
                                                  "password": "short"}, headers=csrf)
        assert short.status_code == 422 and short.json()["errors"][0]["field"] == "password"

        with make_client(database_url, services) as newcomer:
            answer = newcomer.post("/api/v1/session", json={"email": "new@shop.example", "password": password})
            assert answer.status_code == 200 and answer.json()["role"] == "viewer"
            # promoting them ends their session: they sign in again with the new role
            changed = owner.patch(f"/api/v1/staff/{user['id']}", json={"role": "staff"}, headers=csrf)
            assert changed.status_code == 200 and changed.json()["role"] == "staff"
            assert newcomer.get("/api/v1/session").status_code == 401
            # disabling them: they cannot sign in any more
            assert owner.delete(f"/api/v1/staff/{user['id']}", headers=csrf).status_code == 204
            again = newcomer.post("/api/v1/session", json={"email": "new@shop.example", "password": password})
            assert again.status_code == 401


def test_the_last_owner_cannot_be_demoted(database_url: str, services: RecordingServices) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        owners = [row[0] for row in conn.execute(
            "SELECT id FROM gateway.staff_users WHERE role = 'owner' AND disabled_at IS NULL")]
    with make_client(database_url, services) as owner:
        csrf = sign_in(owner, "owner")
        me = owner.get("/api/v1/session").json()["id"]
        for other in owners:
            if str(other) != me:
                assert owner.delete(f"/api/v1/staff/{other}", headers=csrf).status_code == 204
        refused = owner.patch(f"/api/v1/staff/{me}", json={"role": "staff"}, headers=csrf)
        assert refused.status_code == 409 and "last active owner" in refused.json()["detail"]
        assert owner.get("/api/v1/session").json()["role"] == "owner"


# ------------------------------------------------------------------------------------------ API keys
def test_api_keys_keep_working_and_have_roles(database_url: str, client: TestClient,
                                              services: RecordingServices) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        _key_id, machine = create_api_key(conn, "shop-frontend")  # a key as made before roles: an owner
    headers = {"Authorization": f"Bearer {machine}"}
    assert client.get("/api/v1/session", headers=headers).json()["role"] == "owner"
    # no CSRF token needed without a cookie
    assert client.post("/api/v1/orders/1001/refunds", json=REFUND, headers=headers).status_code == 404

    created = client.post("/api/v1/apikeys", json={"name": "reporting", "role": "viewer"}, headers=headers)
    assert created.status_code == 201
    viewer_key = created.json()["key"]
    listed = client.get("/api/v1/apikeys", headers=headers).json()
    assert any(k["name"] == "reporting" and k["role"] == "viewer" for k in listed)
    assert viewer_key not in str(listed)
    viewer = {"Authorization": f"Bearer {viewer_key}"}
    services.calls.clear()
    assert client.post("/api/v1/orders/1001/refunds", json=REFUND, headers=viewer).status_code == 403
    assert client.get("/api/v1/apikeys", headers=viewer).status_code == 403
    assert services.calls == []
    assert client.delete(f"/api/v1/apikeys/{created.json()['id']}", headers=headers).status_code == 204
    assert client.get("/api/v1/session", headers=viewer).status_code == 401


def test_staff_cannot_manage_api_keys(client: TestClient) -> None:
    csrf = sign_in(client, "staff")
    assert client.post("/api/v1/apikeys", json={"name": "mine"}, headers=csrf).status_code == 403


# ------------------------------------------------------------------------------------------ the page
def test_the_dashboard_is_served_with_its_security_headers(client: TestClient) -> None:
    for path in ("/", "/dashboard/", "/dashboard/static/js/app.js", "/dashboard/static/js/pages/signin.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    assert "<main" in client.get("/").text
    assert "javascript" in client.get("/dashboard/static/js/app.js").headers["content-type"]
