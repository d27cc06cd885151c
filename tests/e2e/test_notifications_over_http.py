"""Notifications end to end, as a merchant and their customers see them: the orders, payments and notifications
services, the gateway and the sandbox messaging provider as real processes, and a real SMTP server (aiosmtpd,
on loopback, in this test) receiving the e-mails.

An e-mail customer's order is e-mailed (plain text and HTML), a WhatsApp order reaches the customer's phone
once and its receipts move it to read, a duplicated event sends nothing more, the live alert stream resumes
after a reconnect with exactly the alerts missed, a test order messages nobody real, a template with an unknown
variable is refused when saved, and the order's timeline tells its story across the services."""

from __future__ import annotations

import email
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Payments, System, free_port, until
from tests.processes import _process, service_process

pytestmark = pytest.mark.e2e

STORE_EMAIL = "store@shop.example"


class Inbox:
    """What the SMTP server received: (envelope recipients, parsed message)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mails: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        with self.lock:
            self.mails.append(([str(r).lower() for r in envelope.rcpt_tos], message))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for rcpts, m in self.mails if address.lower() in rcpts]

    def recipients(self) -> set[str]:
        with self.lock:
            return {r for rcpts, _m in self.mails for r in rcpts}


@dataclass
class Messaging:
    system: System
    sandbox: str
    inbox: Inbox
    payments: Payments

    def api(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.system.base, headers={**self.system.headers, **headers}, timeout=30)

    def phone(self, number: str) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = httpx.get(f"{self.sandbox}/sandbox/messages", params={"to": number},
                                              timeout=10).json()
        return got


@pytest.fixture(scope="module")
def messaging(payments: Payments, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Messaging]:
    from aiosmtpd.controller import Controller

    system = payments.system
    inbox = Inbox()
    smtp_port, sandbox_port = free_port(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    env = {
        **system.env,
        "OMS_SMTP_HOST": "127.0.0.1",
        "OMS_SMTP_PORT": str(smtp_port),
        "OMS_SMS_URL": sandbox,
        "OMS_WHATSAPP_URL": sandbox,
        "OMS_PUBLIC_URL": system.base.removesuffix("/api/v1"),
        "OMS_STORE_EMAIL": STORE_EMAIL,
        "OMS_SANDBOX_MESSAGING_PORT": str(sandbox_port),
        "OMS_SANDBOX_MESSAGING_RECEIPT_DELAY": "0.2",
    }
    logs = tmp_path_factory.mktemp("notifications-e2e-logs")
    sandbox_cmd = [sys.executable, "-m", "services.notifications.provider.sandbox"]
    try:
        with _process(sandbox_cmd, "sandbox-messaging", env, logs, "Uvicorn running"), \
                service_process("notifications", env, logs):
            yield Messaging(system, sandbox, inbox, payments)
    finally:
        controller.stop()


def place(api: httpx.Client, channel: str, customer: dict[str, str], sku: str = "MUG") -> dict[str, Any]:
    response = api.post("/orders", json={
        "channel": channel, "currency": "EUR", "customer": customer,
        "items": [{"sku": sku, "name": "Blue mug", "quantity": 2, "unit_price": "12.50"}]})
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def messages_of(api: httpx.Client, order: dict[str, Any]) -> list[dict[str, Any]]:
    response = api.get(f"/orders/{order['id']}/messages")
    if response.status_code == 503:  # notifications have not heard of the order yet
        return []
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def parts(message: Message) -> dict[str, str]:
    out = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out[part.get_content_type()] = payload.decode(part.get_content_charset() or "utf-8")
    return out


# ------------------------------------------------------------------------------------------ e-mail
def test_an_email_customers_order_is_emailed_with_a_text_and_an_html_part(messaging: Messaging) -> None:
    with messaging.api() as api:
        order = place(api, "web", {"name": "Lena Vogel", "email": "lena.vogel@example.com"})
        (mail,) = until(lambda: messaging.inbox.to("lena.vogel@example.com"), "the order e-mail")
        body = parts(mail)
        assert set(body) >= {"text/plain", "text/html"}
        assert str(order["number"]) in mail["Subject"]
        assert str(order["number"]) in body["text/plain"] and "Lena" in body["text/plain"]
        assert str(order["number"]) in body["text/html"]
        assert mail["Message-ID"].endswith("@oms>")
        sent = until(lambda: [m for m in messages_of(api, order) if m["kind"] == "order_placed"
                              and m["status"] == "sent"], "the message recorded as sent")
        assert sent[0]["channel"] == "email"
        # The store hears of every new order at its address.
        until(lambda: [m for m in messaging.inbox.to(STORE_EMAIL) if str(order["number"]) in m["Subject"]],
              "the new-order e-mail to the store")


# ------------------------------------------------------------------------------------------ WhatsApp
def test_a_whatsapp_order_reaches_the_phone_once_and_its_receipts_move_it_to_read(messaging: Messaging) -> None:
    phone = "+216 55 100 201"
    with messaging.api() as api:
        order = place(api, "whatsapp", {"name": "Amira Ben Salah", "phone": phone})
        until(lambda: messaging.phone(phone), "the WhatsApp message on the sandbox phone")
        read = until(lambda: [m for m in messages_of(api, order) if m["channel"] == "whatsapp"
                              and m["status"] == "read"], "the read receipt", timeout=30)
        message = api.get(f"/notifications/messages/{read[0]['id']}").json()
        statuses = [h.get("status") or h.get("to") for h in message["history"]]
        assert statuses.index("sent") < statuses.index("delivered") < statuses.index("read"), statuses
        assert len(messaging.phone(phone)) == 1
        assert len([m for m in messages_of(api, order) if m["channel"] == "whatsapp"]) == 1


def test_a_duplicated_event_sends_one_message(messaging: Messaging) -> None:
    import pika

    phone = "+216 55 100 302"
    conn = pika.BlockingConnection(pika.URLParameters(messaging.system.servers.amqp_url))
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, "oms.events", routing_key="order.placed.v1")
    try:
        with messaging.api() as api:
            order = place(api, "whatsapp", {"name": "Duplicate Customer", "phone": phone})

            def placed() -> tuple[Any, bytes] | None:
                while True:
                    method, props, body = ch.basic_get(queue, auto_ack=True)
                    if method is None:
                        return None
                    if json.loads(body)["subject"] == order["id"]:
                        return props, body

            props, body = until(placed, "the order.placed event on the bus")
            until(lambda: messaging.phone(phone), "the first message")
            ch.basic_publish("oms.events", "order.placed.v1", body, props)  # the broker delivers it again
            # Then another order: once its message went, the duplicate (published first) was handled too.
            later = place(api, "whatsapp", {"name": "Later Customer", "phone": "+216 55 100 303"})
            until(lambda: messages_of(api, later), "the later order's message")
            until(lambda: messaging.phone("+216 55 100 303"), "the later message on its phone")
            assert len(messaging.phone(phone)) == 1
            kinds = sorted(m["kind"] for m in messages_of(api, order))
            assert kinds == ["new_order_staff", "order_placed"]  # the customer's, and the store's e-mail
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ alert stream
class Stream:
    """A server-sent events client: each event as a dict (id, event, data)."""

    def __init__(self, api: httpx.Client, path: str, **headers: str) -> None:
        self.context = api.stream("GET", path, headers=headers, timeout=httpx.Timeout(30, read=40))
        self.response = self.context.__enter__()
        assert self.response.status_code == 200, self.response.read()
        self.lines = self.response.iter_lines()

    def next_event(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for line in self.lines:
            if not line:
                if "id" in fields:
                    fields["data"] = json.loads(fields["data"])
                    return fields
                fields = {}
            elif not line.startswith(":") and ": " in line:
                name, _, value = line.partition(": ")
                fields[name] = value
        raise AssertionError("the stream ended")

    def until_number(self, number: int) -> list[dict[str, Any]]:
        seen = []
        while True:
            event = self.next_event()
            seen.append(event)
            if event["data"].get("number") == number:
                return seen

    def close(self) -> None:
        self.context.__exit__(None, None, None)


def test_the_alert_stream_resumes_after_a_reconnect_with_exactly_the_missed_alerts(messaging: Messaging) -> None:
    with messaging.api() as api:
        first = Stream(api, "/alerts/stream?kinds=new_order")
        assert first.response.headers["content-type"].startswith("text/event-stream")
        assert first.response.headers["cache-control"] == "no-cache"
        a = place(api, "web", {"name": "Stream One", "email": "stream.one@example.com"})
        got = first.until_number(a["number"])
        assert got[-1]["event"] == "new_order" and got[-1]["data"]["kind"] == "new_order"
        last_id = got[-1]["id"]
        first.close()  # the client goes away; alerts keep coming

        b = place(api, "web", {"name": "Stream Two", "email": "stream.two@example.com"})
        c = place(api, "whatsapp", {"name": "Stream Three", "phone": "+216 55 100 404"})
        missed_page = until(lambda: [x for x in api.get("/alerts", params={"after": last_id, "kinds": "new_order"})
                                     .json()["items"] if x["number"] == c["number"]],
                            "the third order's alert")
        assert missed_page

        again = Stream(api, "/alerts/stream?kinds=new_order", **{"Last-Event-ID": last_id})
        resumed = again.until_number(c["number"])
        again.close()
        expected = api.get("/alerts", params={"after": last_id, "kinds": "new_order"}).json()["items"]
        expected = expected[: [x["number"] for x in expected].index(c["number"]) + 1]
        assert [int(e["id"]) for e in resumed] == [x["id"] for x in expected]  # no gap, no repeat
        assert int(resumed[0]["id"]) > int(last_id)
        assert {b["number"], c["number"]} <= {e["data"]["number"] for e in resumed}
        assert a["number"] not in {e["data"]["number"] for e in resumed}


def test_the_alert_stream_needs_an_api_key(messaging: Messaging) -> None:
    response = httpx.get(f"{messaging.system.base}/alerts/stream", timeout=10)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


# ------------------------------------------------------------------------------------------ test orders
def test_a_test_order_messages_nobody_real(messaging: Messaging) -> None:
    real_email, real_phone = "real.person@example.com", "+216 55 100 505"
    with messaging.api() as api:
        response = api.post("/test-orders", json={"customer": {"name": "Real Person", "phone": real_phone,
                                                               "email": real_email}})
        assert response.status_code == 201, response.text
        order = response.json()
        sent = until(lambda: [m for m in messages_of(api, order) if m["status"] in ("sent", "delivered", "read")],
                     "the test order's message")
        until(lambda: [m for m in messaging.inbox.to(STORE_EMAIL) if str(order["number"]) in m["Subject"]
                       and m["Subject"].startswith("[TEST]")], "the [TEST] e-mail at the test recipient")
        customer_messages = [m for m in messages_of(api, order) if m["kind"] != "new_order_staff"]
        assert customer_messages
        for message in customer_messages:
            assert message["test"] is True and message["redirected"] is True, message
            assert (message["subject"] or message["text"]).startswith("[TEST]"), message
        assert sent
        assert real_email not in messaging.inbox.recipients()
        # SMS and WhatsApp only ever go to the sandbox provider (this one), never a real phone.


# ------------------------------------------------------------------------------------------ templates
def test_a_template_with_an_unknown_variable_is_refused_when_saved(messaging: Messaging) -> None:
    with messaging.api() as api:
        response = api.put("/notifications/templates/order_placed/email/en", json={
            "subject": "Your order {{ order.number }}", "text": "Use {{ coupon_code }} next time",
            "html": "<p>Thanks</p>"})
        assert response.status_code == 422, response.text
        problem = response.json()
        assert any(e["field"] == "text" and "coupon_code" in e["reason"] for e in problem["errors"]), problem
        assert api.get("/notifications/templates/order_placed/email/en").json()["is_default"] is True

        saved = api.put("/notifications/templates/order_placed/sms/fr",
                        json={"text": "Commande {{ order.number }} reçue, merci {{ customer.first_name }} !"})
        assert saved.status_code == 200, saved.text
        assert saved.json()["is_default"] is False
        reset = api.delete("/notifications/templates/order_placed/sms/fr")
        assert reset.status_code == 200 and reset.json()["is_default"] is True


# ------------------------------------------------------------------------------------------ timeline
def test_the_timeline_tells_the_orders_story_across_services(messaging: Messaging) -> None:
    phone = "+216 55 100 606"
    with messaging.api() as api:
        order = place(api, "whatsapp", {"name": "Timeline Customer", "phone": phone})
        paid = api.post(f"/orders/{order['number']}/payments/manual", json={"amount": "10.00", "reference": "T-1",
                                                                               "method": "cash_on_delivery"})
        assert paid.status_code in (200, 201), paid.text

        def story() -> list[dict[str, Any]] | None:
            response = api.get(f"/orders/%23{order['number']}/timeline")
            if response.status_code != 200:
                return None
            entries: list[dict[str, Any]] = response.json()["entries"]
            sources = {e["source"] for e in entries}
            return entries if {"orders", "payments", "notifications"} <= sources else None

        entries = until(story, "orders, payments and notifications on the timeline", timeout=30)
        assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
        assert entries[0]["kind"] == "order.placed.v1"
        assert all(e["summary"] for e in entries)


def test_whatsapps_subscription_handshake(messaging: Messaging) -> None:
    from services.notifications.contracts.sandbox import WHATSAPP_WEBHOOK_PATH

    base = messaging.system.base.removesuffix("/api/v1")
    ok = httpx.get(base + WHATSAPP_WEBHOOK_PATH, params={"hub.mode": "subscribe", "hub.challenge": "8731",
                                                         "hub.verify_token": "oms-dev-verify-token"}, timeout=10)
    assert (ok.status_code, ok.text) == (200, "8731")
    wrong = httpx.get(base + WHATSAPP_WEBHOOK_PATH, params={"hub.mode": "subscribe", "hub.challenge": "8731",
                                                            "hub.verify_token": "guess"}, timeout=10)
    assert wrong.status_code == 403
