"""The notifications routes of the gateway with the RPC client replaced by an in-process stand-in (no servers):
which notifications RPC each route makes with which arguments, order numbers resolved through orders,
templates addressed by their path, the status tables, the alert stream (server-sent events: framing, resume
after Last-Event-ID, kinds, keep-alives, the client going away, a service that is down), the public provider
webhooks and WhatsApp's handshake, and every RPC of the notifications contract reachable over HTTP. The service
itself is tested over HTTP in tests/e2e/test_notifications_over_http.py."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.gateway import sse
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.notifications.contracts import schemas
from services.notifications.contracts.sandbox import (
    SMS_SIGNATURE_HEADER,
    SMS_WEBHOOK_PATH,
    WHATSAPP_SIGNATURE_HEADER,
    WHATSAPP_WEBHOOK_PATH,
)
from services.notifications.contracts.vocabulary import tables
from shared.errors import InvalidRequest, NotFound, field_error
from tests.unit.test_gateway_problems import (
    KEY,
    ORDER_ID,
    PRINCIPAL,
    FakeAuth,
    FakeRpc,
    MemoryIdempotency,
    assert_problem,
)

pytestmark = pytest.mark.unit

P = "/api/v1"
AT = "2024-05-01T10:00:00+00:00"
MESSAGE_ID = "3d1f6a8e-5b0c-4f5e-9a0b-7c2d1e4f5a6b"
ACTOR = {"type": "staff", "id": str(PRINCIPAL.id), "name": PRINCIPAL.name}


def template_view(**overrides: Any) -> dict[str, Any]:
    view = {"kind": "order_placed", "channel": "email", "language": "en", "subject": "Order {{ order.number }}",
            "text": "Thanks {{ customer.first_name }}", "html": "<p>Thanks</p>", "is_default": True,
            "variables": ["customer", "order", "store", "test"]}
    view.update(overrides)
    return view


def message_view(**overrides: Any) -> dict[str, Any]:
    view = {"id": MESSAGE_ID, "order_id": ORDER_ID, "order_number": 1001, "kind": "order_placed",
            "channel": "whatsapp", "recipient": "+2165•••••12", "language": "en", "status": "failed", "attempts": 1,
            "reason": "invalid number", "test": False, "redirected": False, "text": "Thanks", "created_at": AT,
            "updated_at": AT}
    view.update(overrides)
    return view


def alert(alert_id: int, kind: str = "new_order") -> dict[str, Any]:
    return {"id": 500 + alert_id, "position": alert_id, "kind": kind, "order_id": ORDER_ID,
            "number": 1000 + alert_id, "test": False,
            "title": f"New order #{1000 + alert_id}", "text": "2 items, 44.535 TND", "at": AT}


RESULTS: dict[str, Any] = {
    "list_templates": {"items": [template_view(), template_view(channel="sms", subject=None, html=None)]},
    "save_template": template_view(is_default=False, updated_at=AT),
    "reset_template": template_view(),
    "preview_template": {"subject": "Order 1001", "text": "Thanks Asha", "html": "<p>Thanks</p>",
                         "recipient": "a•••@example.com"},
    "get_settings": {"kinds": [{"kind": "order_placed", "enabled": True, "channels": "auto"}], "language": "en",
                     "store_email": "orders@example.com"},
    "update_settings": {"kinds": [{"kind": "order_placed", "enabled": False, "channels": "auto"}], "language": "fr"},
    "list_messages": {"items": [message_view()], "next_after": None},
    "get_message": message_view(),
    "resend_message": message_view(status="queued"),
    "timeline": {"order_id": ORDER_ID, "entries": [
        {"at": AT, "source": "orders", "kind": "order.placed.v1", "summary": "Order placed",
         "actor": ACTOR, "data": {}}]},
    "handle_provider_webhook": {"received": True, "applied": 1},
    "get_order": {"id": ORDER_ID, "number": 1001},
}


class AlertsRpc(FakeRpc):
    """Answers ``alerts_after`` from a list of alerts, as the service does (ids ascending, kinds, limit)."""

    def __init__(self, alerts: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.results.update(RESULTS)
        self.alerts = list(alerts or [])
        self.down = False

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if method != "alerts_after":
            return await super().call(service, method, *args, timeout=timeout, **kwargs)
        self.calls.append((service, method, args, kwargs))
        if self.down:
            from services.gateway.rpc import ServiceUnavailable

            raise ServiceUnavailable("The notifications service is not running.", service="notifications")
        kinds = kwargs.get("kinds")
        items = [a for a in self.alerts if a["position"] > kwargs["after_id"] and (not kinds or a["kind"] in kinds)]
        return {"items": items[: kwargs.get("limit", 100)]}


@pytest.fixture()
def rpc() -> AlertsRpc:
    return AlertsRpc()


@pytest.fixture()
def app(rpc: AlertsRpc) -> FastAPI:
    return create_app(GatewaySettings(), rpc=rpc, authenticator=FakeAuth(), idempotency=MemoryIdempotency())


@pytest.fixture()
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def calls(rpc: FakeRpc, service: str = "notifications") -> list[tuple[str, dict[str, Any]]]:
    return [(method, kwargs) for s, method, _args, kwargs in rpc.calls if s == service]


# ------------------------------------------------------------------------------------------ orders by ref
def test_an_order_number_is_resolved_through_orders_for_the_timeline(client: TestClient, rpc: AlertsRpc) -> None:
    response = client.get(f"{P}/orders/%231001/timeline")
    assert response.status_code == 200, response.text
    assert response.json()["entries"][0]["kind"] == "order.placed.v1"
    assert [(s, m) for s, m, _a, _k in rpc.calls] == [("orders", "get_order"), ("notifications", "timeline")]
    assert rpc.calls[0][3] == {"ref": "#1001"}
    assert rpc.calls[1][3] == {"order_id": ORDER_ID}


def test_an_order_notifications_have_not_heard_of_yet_is_waited_for(rpc: AlertsRpc,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from services.gateway.routes import notifications as routes

    monkeypatch.setattr(routes, "NOTIFICATIONS_CATCH_UP_SECONDS", 0.05)
    rpc.results["timeline"] = NotFound("Unknown order.", order_id=ORDER_ID)
    app = create_app(GatewaySettings(), rpc=rpc, authenticator=FakeAuth(), idempotency=MemoryIdempotency())
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {KEY}"}) as c:
        response = c.get(f"{P}/orders/{ORDER_ID}/timeline")
    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert ("orders", "get_order") in [(s, m) for s, m, _a, _k in rpc.calls]


def test_messages_by_order_status_and_channel(client: TestClient, rpc: AlertsRpc) -> None:
    response = client.get(f"{P}/notifications/messages", params={"order": "1001", "status": "failed",
                                                                   "channel": "whatsapp", "limit": 10})
    assert response.status_code == 200, response.text
    assert response.json()["items"][0]["reason"] == "invalid number"
    assert calls(rpc) == [("list_messages", {"order_id": ORDER_ID, "status": "failed", "channel": "whatsapp",
                                             "limit": 10, "after": None})]
    assert_problem(client.get(f"{P}/notifications/messages", params={"status": "lost"}), 422)


def test_an_orders_messages(client: TestClient, rpc: AlertsRpc) -> None:
    assert client.get(f"{P}/orders/{ORDER_ID}/messages").status_code == 200
    assert calls(rpc) == [("list_messages", {"order_id": ORDER_ID, "status": None, "channel": None, "limit": 50,
                                             "after": None})]


def test_resend_is_idempotent_and_names_the_message(client: TestClient, rpc: AlertsRpc) -> None:
    for _ in range(2):
        response = client.post(f"{P}/notifications/messages/{MESSAGE_ID}/resend", headers={"Idempotency-Key": "r1"})
        assert response.status_code == 200, response.text
        assert response.headers["Location"] == f"{P}/notifications/messages/{MESSAGE_ID}"
    assert calls(rpc) == [("resend_message", {"message_id": MESSAGE_ID, "actor": ACTOR})]


# ------------------------------------------------------------------------------------------ templates
def test_a_template_is_saved_at_its_path(client: TestClient, rpc: AlertsRpc) -> None:
    body = {"subject": "Order {{ order.number }}", "text": "Hi {{ customer.first_name }}", "html": "<b>Hi</b>"}
    response = client.put(f"{P}/notifications/templates/order_placed/email/fr", json=body)
    assert response.status_code == 200, response.text
    ((method, kwargs),) = calls(rpc)
    assert method == "save_template"
    assert kwargs["actor"] == ACTOR
    assert kwargs["command"] == {**body, "kind": "order_placed", "channel": "email", "language": "fr",
                                 "whatsapp_template": None, "whatsapp_params": []}


def test_a_template_body_naming_another_template_is_refused(client: TestClient, rpc: AlertsRpc) -> None:
    response = client.put(f"{P}/notifications/templates/order_placed/email/en",
                          json={"kind": "order_placed", "channel": "sms", "text": "Hi"})
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == ["channel"]
    assert calls(rpc) == []
    assert_problem(client.put(f"{P}/notifications/templates/order_placed/fax/en", json={"text": "Hi"}), 422)
    assert_problem(client.put(f"{P}/notifications/templates/order_placed/sms/english", json={"text": "Hi"}), 422)


def test_an_unknown_variable_is_the_services_422_naming_it(client: TestClient, rpc: AlertsRpc) -> None:
    rpc.results["save_template"] = InvalidRequest(
        "The template uses a variable order_placed does not offer: coupon.",
        errors=[field_error("text", "unknown variable 'coupon'", "unknown_variable")])
    response = client.put(f"{P}/notifications/templates/order_placed/sms/en", json={"text": "{{ coupon }}"})
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "text"
    assert "coupon" in problem["errors"][0]["reason"]


def test_one_template_is_picked_from_the_list(client: TestClient, rpc: AlertsRpc) -> None:
    response = client.get(f"{P}/notifications/templates/order_placed/sms/en")
    assert response.status_code == 200
    assert response.json()["channel"] == "sms"
    assert calls(rpc) == [("list_templates", {"kind": "order_placed", "channel": "sms", "language": "en"})]
    assert_problem(client.get(f"{P}/notifications/templates/order_placed/whatsapp/en"), 404)


def test_reset_and_preview(client: TestClient, rpc: AlertsRpc) -> None:
    assert client.delete(f"{P}/notifications/templates/order_placed/email/en").json()["is_default"] is True
    preview = {"kind": "order_placed", "channel": "email", "order_id": ORDER_ID,
               "draft": {"kind": "order_placed", "channel": "email", "text": "Hi {{ customer.name }}"}}
    response = client.post(f"{P}/notifications/templates/preview", json=preview)
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "Thanks Asha"
    (reset, (method, kwargs)) = calls(rpc)
    assert reset == ("reset_template", {"kind": "order_placed", "channel": "email", "language": "en",
                                        "actor": ACTOR})
    assert method == "preview_template"
    assert kwargs["command"]["order_id"] == ORDER_ID and kwargs["command"]["draft"]["text"] == "Hi {{ customer.name }}"


def test_settings_send_only_what_is_given(client: TestClient, rpc: AlertsRpc) -> None:
    assert client.get(f"{P}/notifications/settings").json()["store_email"] == "orders@example.com"
    response = client.put(f"{P}/notifications/settings",
                          json={"language": "fr", "kinds": [{"kind": "order_placed", "enabled": False}]})
    assert response.status_code == 200, response.text
    # Only what the client sent: the service keeps the rest (another kind, this kind's channels).
    assert calls(rpc)[1] == ("update_settings", {"command": {"language": "fr", "kinds": [
        {"kind": "order_placed", "enabled": False}]}, "actor": ACTOR})
    assert_problem(client.put(f"{P}/notifications/settings", json={"language": "French"}), 422)


def test_status_tables_come_from_the_contract_without_a_call(client: TestClient, rpc: AlertsRpc) -> None:
    response = client.get(f"{P}/notifications/statuses")
    assert response.status_code == 200
    assert response.json() == tables()
    assert rpc.calls == []


def test_every_route_needs_an_api_key_but_the_webhooks(client: TestClient, rpc: AlertsRpc) -> None:
    for method, path in (("GET", "/notifications/messages"), ("GET", "/alerts"), ("GET", "/alerts/stream"),
                         ("PUT", "/notifications/settings"), ("GET", f"/orders/{ORDER_ID}/timeline")):
        assert_problem(client.request(method, P + path, headers={"Authorization": "Bearer nope"}), 401)
    assert rpc.calls == []


# ------------------------------------------------------------------------------------------ alerts
def test_alert_pages_and_kinds(client: TestClient, rpc: AlertsRpc) -> None:
    rpc.alerts = [alert(1), alert(2, "payment_update"), alert(3)]
    response = client.get(f"{P}/alerts", params={"after": 1, "kinds": "new_order, payment_update"})
    assert [a["position"] for a in response.json()["items"]] == [2, 3]
    assert calls(rpc) == [("alerts_after", {"after_id": 1, "kinds": ["new_order", "payment_update"], "limit": 100})]


def test_an_unknown_alert_kind_is_named(client: TestClient, rpc: AlertsRpc) -> None:
    for path in ("/alerts", "/alerts/stream"):
        problem = assert_problem(client.get(P + path, params={"kinds": "new_order,new_orders"}), 422)
        assert problem["errors"][0]["field"] == "kinds"
        assert "new_orders" in problem["errors"][0]["reason"]
    assert rpc.calls == []


class Stream:
    """One SSE request driven at the ASGI level (TestClient waits for the end of a response; a stream has none):
    the chunks as they are sent, and a client that goes away when told to."""

    def __init__(self, app: FastAPI, path: str, headers: dict[str, str] | None = None) -> None:
        raw_path, _, query = path.partition("?")
        all_headers = {"authorization": f"Bearer {KEY}", "host": "testserver", **(headers or {})}
        self.scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": raw_path, "raw_path": raw_path.encode(),
            "query_string": query.encode(), "root_path": "", "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
        }
        self.app = app
        self.gone = asyncio.Event()
        self.start: dict[str, Any] = {}
        self.chunks: asyncio.Queue[str] = asyncio.Queue()
        self.text = ""
        self._sent_request = False
        self.task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        if not self._sent_request:
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            await self.chunks.put(message.get("body", b"").decode())

    async def open(self) -> None:
        self.task = asyncio.create_task(self.app(self.scope, self._receive, self._send))
        while not self.start and not self.task.done():
            await asyncio.sleep(0.01)

    @property
    def status(self) -> int:
        return int(self.start.get("status", 0))

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.start.get("headers", [])}

    async def until(self, needle: str) -> str:
        while needle not in self.text:
            self.text += await asyncio.wait_for(self.chunks.get(), 10)
        return self.text

    async def close(self) -> None:
        self.gone.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


def events(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
                      and ": " in line)
        if "id" in fields:
            out.append(fields)
    return out


@pytest.fixture()
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "POLL_SECONDS", 0.01)


def test_the_stream_sends_new_alerts_as_events_and_ends_when_the_client_goes(
        app: FastAPI, rpc: AlertsRpc, fast: None) -> None:
    rpc.alerts = [alert(i) for i in range(1, 38)]

    async def scenario() -> None:
        stream = Stream(app, f"{P}/alerts/stream")
        await stream.open()
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        await stream.until("retry: ")
        rpc.alerts.append(alert(38))
        rpc.alerts.append(alert(39, "payment_update"))
        text = await stream.until("id: 39")
        got = events(text)
        assert [e["id"] for e in got] == ["38", "39"]  # a new client gets what happens from now on
        assert [e["event"] for e in got] == ["new_order", "payment_update"]
        assert json.loads(got[1]["data"])["title"] == "New order #1039"
        await stream.close()
        polls = len(rpc.calls)
        await asyncio.sleep(0.05)
        assert len(rpc.calls) == polls  # nobody polls for a client that went away

    asyncio.run(scenario())


def test_last_event_id_resumes_without_a_gap_or_a_repeat_and_wins_over_after(
        app: FastAPI, rpc: AlertsRpc, fast: None) -> None:
    rpc.alerts = [alert(1), alert(2, "stage_change"), alert(3), alert(4)]

    async def scenario() -> None:
        stream = Stream(app, f"{P}/alerts/stream?after=0&kinds=new_order", {"Last-Event-ID": "1"})
        await stream.open()
        text = await stream.until("id: 4")
        assert [e["id"] for e in events(text)] == ["3", "4"]  # 2 is another kind
        await stream.close()
        assert all(kw["kinds"] == ["new_order"] for _m, kw in calls(rpc))

        again = Stream(app, f"{P}/alerts/stream?after=2")
        await again.open()
        assert [e["id"] for e in events(await again.until("id: 4"))] == ["3", "4"]
        await again.close()

    asyncio.run(scenario())


def test_a_bad_last_event_id_is_a_422_on_the_header(client: TestClient) -> None:
    problem = assert_problem(client.get(f"{P}/alerts/stream", headers={"Last-Event-ID": "abc"}), 422)
    assert problem["errors"][0]["field"] == "Last-Event-ID"


def test_quiet_streams_get_keep_alive_comments(app: FastAPI, rpc: AlertsRpc, fast: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "HEARTBEAT_SECONDS", 0.05)

    async def scenario() -> None:
        stream = Stream(app, f"{P}/alerts/stream?after=0")
        await stream.open()
        await stream.until(": keep-alive\n\n")
        await stream.close()

    asyncio.run(scenario())


def test_a_service_down_at_connect_is_a_503_and_later_the_stream_waits_for_it(
        app: FastAPI, rpc: AlertsRpc, client: TestClient, fast: None) -> None:
    rpc.down = True
    assert_problem(client.get(f"{P}/alerts/stream?after=0"), 503)

    async def scenario() -> None:
        rpc.down = False
        stream = Stream(app, f"{P}/alerts/stream?after=0")
        await stream.open()
        await stream.until("retry: ")
        rpc.down = True
        rpc.alerts.append(alert(1))
        await asyncio.sleep(0.05)
        rpc.down = False
        assert [e["id"] for e in events(await stream.until("id: 1"))] == ["1"]
        await stream.close()

    with pytest.MonkeyPatch.context() as m:
        m.setattr(sse, "HEARTBEAT_SECONDS", 0.05)  # the retry pause after a failure is bounded by it
        asyncio.run(scenario())


@pytest.mark.parametrize("newest", [0, 1, 2, 7, 64, 1000, 123457])
def test_a_stream_without_a_position_starts_after_the_newest_alert(newest: int) -> None:
    rpc = AlertsRpc([alert(i) for i in range(max(1, newest - 3), newest + 1)] if newest else [])
    poller = sse.AlertPoller(rpc, kinds=["new_order"], after=-1)
    assert asyncio.run(poller.start()) == []
    assert poller.last_id == newest
    assert len(rpc.calls) <= 2 * max(newest, 1).bit_length() + 2
    assert poller.kinds == ["new_order"]


# ------------------------------------------------------------------------------------------ webhooks
def test_the_sms_webhook_is_public_and_passed_on_raw_with_its_url(client: TestClient, rpc: AlertsRpc) -> None:
    body = "MessageSid=SM1&MessageStatus=delivered&To=%2B21655000012"
    response = client.post(SMS_WEBHOOK_PATH + "?attempt=1", content=body,
                           headers={"Authorization": "", "Content-Type": "application/x-www-form-urlencoded",
                                    SMS_SIGNATURE_HEADER: "c2ln", "X-Other": "dropped"})
    assert response.status_code == 200, response.text
    ((method, kwargs),) = calls(rpc)
    assert method == "handle_provider_webhook"
    assert kwargs == {"provider": "sms", "body": body, "url": f"http://testserver{SMS_WEBHOOK_PATH}?attempt=1",
                      "headers": {"content-type": "application/x-www-form-urlencoded",
                                  SMS_SIGNATURE_HEADER.lower(): "c2ln"}}


def test_the_whatsapp_webhook_is_public_and_passed_on_raw(client: TestClient, rpc: AlertsRpc) -> None:
    body = '{"object":"whatsapp_business_account","entry":[]}'
    response = client.post(WHATSAPP_WEBHOOK_PATH, content=body, headers={
        "Authorization": "", "Content-Type": "application/json", WHATSAPP_SIGNATURE_HEADER: "sha256=ab"})
    assert response.status_code == 200, response.text
    ((_method, kwargs),) = calls(rpc)
    assert (kwargs["provider"], kwargs["body"]) == ("whatsapp", body)
    assert kwargs["headers"][WHATSAPP_SIGNATURE_HEADER.lower()] == "sha256=ab"


def test_the_whatsapp_handshake_echoes_the_challenge_only_for_the_token() -> None:
    from pydantic import SecretStr

    def handshake(settings: GatewaySettings, token: str, mode: str = "subscribe") -> Any:
        app = create_app(settings, rpc=AlertsRpc(), authenticator=FakeAuth(), idempotency=MemoryIdempotency())
        with TestClient(app, raise_server_exceptions=False) as c:
            return c.get(WHATSAPP_WEBHOOK_PATH, params={"hub.mode": mode, "hub.verify_token": token,
                                                        "hub.challenge": "1158201444"})

    configured = GatewaySettings(whatsapp_verify_token=SecretStr("s3cret"))
    ok = handshake(configured, "s3cret")
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert_problem(handshake(configured, "guess"), 403)
    assert_problem(handshake(configured, "s3cret", mode="unsubscribe"), 403)
    assert handshake(GatewaySettings(), "oms-dev-verify-token").text == "1158201444"
    assert_problem(handshake(GatewaySettings(env="production"), "oms-dev-verify-token"), 403)


# ------------------------------------------------------------------------------------------ completeness
def _contract_rpcs() -> set[str]:
    doc = schemas.__doc__ or ""
    return set(re.findall(r"(?:^\* |/ )``(\w+)\(", doc, re.MULTILINE))


def test_every_rpc_of_the_contract_has_a_route(client: TestClient, rpc: AlertsRpc) -> None:
    requests: list[tuple[str, str, Any]] = [
        ("GET", "/notifications/templates", None),
        ("PUT", "/notifications/templates/order_placed/sms/en", {"text": "Hi"}),
        ("DELETE", "/notifications/templates/order_placed/sms/en", None),
        ("POST", "/notifications/templates/preview", {"kind": "order_placed", "channel": "sms",
                                                      "order_id": ORDER_ID}),
        ("GET", "/notifications/settings", None),
        ("PUT", "/notifications/settings", {}),
        ("GET", "/notifications/messages", None),
        ("GET", f"/notifications/messages/{MESSAGE_ID}", None),
        ("POST", f"/notifications/messages/{MESSAGE_ID}/resend", None),
        ("GET", "/alerts", None),
        ("GET", f"/orders/{ORDER_ID}/timeline", None),
        ("POST", SMS_WEBHOOK_PATH.removeprefix(P), None),
    ]
    for method, path, body in requests:
        response = client.request(method, P + path, json=body)
        assert response.status_code in (200, 201), (method, path, response.text)
    assert {m for m, _k in calls(rpc)} == _contract_rpcs()
    assert len(_contract_rpcs()) == 12


def test_the_new_routes_are_documented_with_an_event_stream(client: TestClient) -> None:
    doc = client.get(f"{P}/openapi.json").json()
    stream = doc["paths"][f"{P}/alerts/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert {p["name"] for p in stream["parameters"]} >= {"after", "kinds", "Last-Event-ID"}
    assert "security" not in doc["paths"][SMS_WEBHOOK_PATH]["post"]
    assert uuid.UUID(MESSAGE_ID)
