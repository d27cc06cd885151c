"""The HTTP adapter against the sandbox provider, over real sockets, with a local webhook receiver."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn

from services.payments.contracts.sandbox import CARD_3DS, CARD_DECLINE, CARD_SUCCESS
from services.payments.provider import (
    CaptureMethod,
    HttpSandboxProvider,
    ProviderDeclined,
    ProviderPaymentStatus,
    ProviderRequestError,
    ProviderUnavailable,
    WebhookEvent,
    WebhookVerificationError,
    generate_webhook_secret,
    sign_webhook,
)
from services.payments.provider.sandbox import create_app

pytestmark = pytest.mark.integration

SECRET = generate_webhook_secret()


class Receiver:
    """A tiny webhook endpoint that records every delivery; can fail the first N with HTTP 500."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._cond:
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    failing = receiver.fail_first > 0
                    receiver.fail_first -= 1 if failing else 0
                    receiver._cond.notify_all()
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, predicate: Callable[[list[tuple[dict[str, str], bytes]]], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"webhooks not received in time: {[json.loads(b) for _, b in self.received]}")
                self._cond.wait(left)

    def events(self, event_type: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.received if json.loads(b)["type"] == event_type]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SandboxServer:
    """The sandbox app on uvicorn in a background thread, bound to a free 127.0.0.1 port."""

    def __init__(self, **app_kwargs: Any) -> None:
        self.app = create_app(**app_kwargs)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def start_sandbox(receiver: Receiver) -> Iterator[Callable[..., tuple[SandboxServer, HttpSandboxProvider]]]:
    started: list[tuple[SandboxServer, HttpSandboxProvider]] = []

    def start(**kw: Any) -> tuple[SandboxServer, HttpSandboxProvider]:
        kw.setdefault("retry_delays", (0.05, 0.1, 0.2))
        server = SandboxServer(webhook_url=receiver.url, webhook_secret=SECRET, **kw)
        provider = HttpSandboxProvider(server.url, SECRET, timeout=5.0)
        started.append((server, provider))
        return server, provider

    yield start
    for server, provider in started:
        provider.close()
        server.close()


@pytest.fixture
def sandbox(start_sandbox: Callable[..., tuple[SandboxServer, HttpSandboxProvider]]) -> HttpSandboxProvider:
    return start_sandbox()[1]


def verified(provider: HttpSandboxProvider, delivery: tuple[dict[str, str], bytes]) -> WebhookEvent:
    headers, body = delivery
    return provider.parse_webhook(body, headers)


def test_successful_card_payment_is_captured_and_announced_by_signed_webhook(
    sandbox: HttpSandboxProvider, receiver: Receiver
) -> None:
    link = sandbox.create_payment_link(D("49.90"), "EUR", "order-1", idempotency_key="o1:link")
    assert link.url.endswith(f"/pay/{link.id}") and link.amount == D("49.90")
    payment = sandbox.authorize(link.id, CARD_SUCCESS, idempotency_key="o1:pay")
    assert payment.status is ProviderPaymentStatus.SUCCEEDED
    assert (payment.amount_captured, payment.currency, payment.reference) == (D("49.90"), "EUR", "order-1")
    receiver.wait_for(lambda r: any(json.loads(b)["type"] == "payment.succeeded" for _, b in r))
    event = verified(sandbox, receiver.events("payment.succeeded")[0])
    assert (event.payment_id, event.amount, event.status) == (payment.id, D("49.90"), "succeeded")
    assert sandbox.get_payment(payment.id).amount_captured == D("49.90")


def test_declined_card_raises_declined_and_sends_payment_failed(
    sandbox: HttpSandboxProvider, receiver: Receiver
) -> None:
    link = sandbox.create_payment_link(D("10.00"), "EUR", "order-2", idempotency_key="o2:link")
    with pytest.raises(ProviderDeclined) as info:
        sandbox.authorize(link.id, CARD_DECLINE, idempotency_key="o2:pay")
    assert info.value.code == "card_declined" and info.value.payment_id
    receiver.wait_for(lambda r: len(r) >= 1)
    event = verified(sandbox, receiver.events("payment.failed")[0])
    assert event.payment_id == info.value.payment_id and event.data["decline_code"] == "card_declined"
    # the customer may try again with another card on the same link
    retry = sandbox.authorize(link.id, CARD_SUCCESS, idempotency_key="o2:pay:2")
    assert retry.status is ProviderPaymentStatus.SUCCEEDED


def test_3ds_card_needs_confirmation_before_money_moves(sandbox: HttpSandboxProvider, receiver: Receiver) -> None:
    link = sandbox.create_payment_link(D("120.00"), "EUR", "order-3", idempotency_key="o3:link")
    pending = sandbox.authorize(link.id, CARD_3DS, idempotency_key="o3:pay")
    assert pending.status is ProviderPaymentStatus.REQUIRES_ACTION
    assert pending.amount_captured == D("0") and pending.next_action_url
    done = sandbox.confirm_3ds(pending.id, idempotency_key="o3:3ds")
    assert done.status is ProviderPaymentStatus.SUCCEEDED and done.amount_captured == D("120.00")
    failed_link = sandbox.create_payment_link(D("5.00"), "EUR", "order-3b", idempotency_key="o3b:link")
    p = sandbox.authorize(failed_link.id, CARD_3DS, idempotency_key="o3b:pay")
    with pytest.raises(ProviderDeclined) as info:
        sandbox.confirm_3ds(p.id, idempotency_key="o3b:3ds", success=False)
    assert info.value.code == "authentication_failed"
    receiver.wait_for(lambda r: len(r) >= 4)
    assert [json.loads(b)["type"] for _, b in receiver.received].count("payment.requires_action") == 2


def test_manual_capture_partial_capture_void_and_refund_limits(sandbox: HttpSandboxProvider) -> None:
    link = sandbox.create_payment_link(
        D("80.00"), "EUR", "order-4", idempotency_key="o4:link", capture_method=CaptureMethod.MANUAL
    )
    auth = sandbox.authorize(link.id, CARD_SUCCESS, idempotency_key="o4:pay")
    assert (auth.status, auth.amount_authorized, auth.amount_captured) == (
        ProviderPaymentStatus.REQUIRES_CAPTURE,
        D("80.00"),
        D("0"),
    )
    with pytest.raises(ProviderRequestError) as too_much:
        sandbox.capture(auth.id, D("80.01"), idempotency_key="o4:cap:too-much")
    assert too_much.value.code == "amount_too_large"
    captured = sandbox.capture(auth.id, D("60.00"), idempotency_key="o4:cap")
    assert (captured.status, captured.amount_captured) == (ProviderPaymentStatus.SUCCEEDED, D("60.00"))
    refund = sandbox.refund(auth.id, D("20.00"), idempotency_key="o4:rf1", reference="rf-1")
    assert (refund.amount, refund.status, refund.reference) == (D("20.00"), "succeeded", "rf-1")
    with pytest.raises(ProviderRequestError) as over:
        sandbox.refund(auth.id, D("40.01"), idempotency_key="o4:rf2")
    assert over.value.code == "amount_too_large"
    with pytest.raises(ProviderRequestError):
        sandbox.void(auth.id, idempotency_key="o4:void")  # already captured
    other = sandbox.create_payment_link(
        D("5.00"), "EUR", "order-5", idempotency_key="o5:link", capture_method=CaptureMethod.MANUAL
    )
    auth2 = sandbox.authorize(other.id, CARD_SUCCESS, idempotency_key="o5:pay")
    assert sandbox.void(auth2.id, idempotency_key="o5:void").status is ProviderPaymentStatus.CANCELED


def test_idempotency_key_replays_instead_of_charging_twice(start_sandbox: Callable[..., Any]) -> None:
    server, provider = start_sandbox()
    link = provider.create_payment_link(D("30.00"), "EUR", "order-6", idempotency_key="o6:link")
    assert provider.create_payment_link(D("30.00"), "EUR", "order-6", idempotency_key="o6:link") == link
    first = provider.authorize(link.id, CARD_SUCCESS, idempotency_key="o6:pay")
    again = provider.authorize(link.id, CARD_SUCCESS, idempotency_key="o6:pay")
    assert again.id == first.id
    assert len(server.app.state.sandbox.payments) == 1
    r1 = provider.refund(first.id, D("10.00"), idempotency_key="o6:rf")
    r2 = provider.refund(first.id, D("10.00"), idempotency_key="o6:rf")
    assert r1 == r2 and provider.get_payment(first.id).amount_refunded == D("10.00")
    with pytest.raises(ProviderRequestError) as info:
        provider.refund(first.id, D("11.00"), idempotency_key="o6:rf")
    assert (info.value.status_code, info.value.code) == (422, "idempotency_key_reused")
    raw = httpx.post(f"{server.url}/v1/payment_links", json={"amount": "1.00", "currency": "EUR"})
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "idempotency_key_required"
    replay = httpx.post(
        f"{server.url}/v1/payments/{first.id}/capture", json={}, headers={"Idempotency-Key": "k"}
    )
    replay2 = httpx.post(
        f"{server.url}/v1/payments/{first.id}/capture", json={}, headers={"Idempotency-Key": "k"}
    )
    assert replay.status_code == replay2.status_code == 409
    assert replay2.headers.get("idempotent-replayed") == "true"


def test_amounts_must_be_exact_decimal_strings(start_sandbox: Callable[..., Any]) -> None:
    server, provider = start_sandbox()
    with pytest.raises(ProviderRequestError) as info:
        provider.create_payment_link(D("10.005"), "EUR", "o", idempotency_key="x1")
    assert info.value.code == "invalid_amount"
    assert provider.create_payment_link(D("1000"), "JPY", "o", idempotency_key="x2").amount == D("1000")
    raw = httpx.post(
        f"{server.url}/v1/payment_links",
        json={"amount": 10.5, "currency": "EUR"},
        headers={"Idempotency-Key": "x3"},
    )
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "invalid_amount"
    with pytest.raises(TypeError):
        provider.create_payment_link(10.5, "EUR", "o", idempotency_key="x4")  # type: ignore[arg-type]


def test_tampered_stale_or_unsigned_webhooks_are_rejected(sandbox: HttpSandboxProvider, receiver: Receiver) -> None:
    link = sandbox.create_payment_link(D("10.00"), "EUR", "order-7", idempotency_key="o7:link")
    sandbox.authorize(link.id, CARD_SUCCESS, idempotency_key="o7:pay")
    receiver.wait_for(lambda r: len(r) >= 1)
    headers, body = receiver.received[0]
    sandbox.verify_webhook(body, headers)  # the genuine one passes
    tampered = body.replace(b'"10.00"', b'"1000.00"')
    assert tampered != body
    with pytest.raises(WebhookVerificationError):
        sandbox.parse_webhook(tampered, headers)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        sandbox.verify_webhook(body, headers, now=int(headers["webhook-timestamp"]) + 301)
    with pytest.raises(WebhookVerificationError):
        sandbox.verify_webhook(body, {k: v for k, v in headers.items() if k != "webhook-signature"})
    other_secret = HttpSandboxProvider("http://127.0.0.1:9", generate_webhook_secret())
    with pytest.raises(WebhookVerificationError):
        other_secret.verify_webhook(body, headers)
    ts = int(time.time())
    forged = {"webhook-id": headers["webhook-id"], "webhook-timestamp": str(ts)}
    forged["webhook-signature"] = sign_webhook(generate_webhook_secret(), forged["webhook-id"], ts, body)
    with pytest.raises(WebhookVerificationError):
        sandbox.verify_webhook(body, forged)


def test_webhooks_are_duplicated_with_the_same_id(
    start_sandbox: Callable[..., Any], receiver: Receiver
) -> None:
    _, provider = start_sandbox(duplicate_rate=1.0, seed=1)
    link = provider.create_payment_link(D("10.00"), "EUR", "order-8", idempotency_key="o8:link")
    provider.authorize(link.id, CARD_SUCCESS, idempotency_key="o8:pay")
    receiver.wait_for(lambda r: len(r) >= 2)
    (h1, b1), (h2, b2) = receiver.received[:2]
    assert h1["webhook-id"] == h2["webhook-id"] and b1 == b2
    assert verified(provider, (h1, b1)) == verified(provider, (h2, b2))


def test_failed_deliveries_are_retried_under_the_same_id(
    start_sandbox: Callable[..., Any], receiver: Receiver
) -> None:
    receiver.fail_first = 2
    server, provider = start_sandbox()
    link = provider.create_payment_link(D("10.00"), "EUR", "order-9", idempotency_key="o9:link")
    provider.authorize(link.id, CARD_SUCCESS, idempotency_key="o9:pay")
    receiver.wait_for(lambda r: len(r) >= 3)
    ids = {h["webhook-id"] for h, _ in receiver.received}
    assert len(ids) == 1
    for delivery in receiver.received:
        verified(provider, delivery)  # every retry is freshly signed
    deliveries = server.app.state.sandbox.deliveries
    deadline = time.monotonic() + 5
    while len(deliveries) < 3 and time.monotonic() < deadline:  # the sandbox logs after the reply arrives
        time.sleep(0.02)
    assert [(d.attempt, d.status_code) for d in deliveries] == [(1, 500), (2, 500), (3, 204)]


def test_delayed_webhooks_arrive_after_the_api_call_returns(
    start_sandbox: Callable[..., Any], receiver: Receiver
) -> None:
    _, provider = start_sandbox(delay=0.5)
    link = provider.create_payment_link(D("10.00"), "EUR", "order-10", idempotency_key="o10:link")
    payment = provider.authorize(link.id, CARD_SUCCESS, idempotency_key="o10:pay")
    assert receiver.received == []  # the caller must not rely on the webhook having arrived
    receiver.wait_for(lambda r: len(r) >= 1)
    assert verified(provider, receiver.received[0]).payment_id == payment.id


def test_unreachable_or_failing_provider_raises_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = HttpSandboxProvider(f"http://127.0.0.1:{port}", SECRET, timeout=1.0)
    with down, pytest.raises(ProviderUnavailable):
        down.create_payment_link(D("1.00"), "EUR", "o", idempotency_key="k")
    seen: list[str] = []

    def broken(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["idempotency-key"])
        return httpx.Response(503, json={"error": {"message": "maintenance"}})

    client = httpx.Client(base_url="http://provider.invalid", transport=httpx.MockTransport(broken))
    with pytest.raises(ProviderUnavailable):
        HttpSandboxProvider("http://provider.invalid", SECRET, client=client).capture("pay_1", idempotency_key="cap-1")
    assert seen == ["cap-1"]


def test_the_hosted_page_lets_a_person_pay_confirm_3ds_or_reserve(
    start_sandbox: Callable[..., tuple[SandboxServer, HttpSandboxProvider]]
) -> None:
    server, provider = start_sandbox()
    auto = provider.create_payment_link(D("49.90"), "EUR", "order-1", idempotency_key="page-1")
    page = httpx.get(auto.url)
    assert page.status_code == 200 and "49.90 EUR" in page.text and "4242424242424242" in page.text
    paid = httpx.post(auto.url, data={"card_number": "4242424242424242"})
    assert paid.status_code == 200 and "Paid 49.90 EUR" in paid.text

    held = provider.create_payment_link(D("10.00"), "EUR", "order-2", idempotency_key="page-2",
                                        capture_method=CaptureMethod.MANUAL)
    reserved = httpx.post(held.url, data={"card_number": "4242424242424242"})
    assert "reserved on your card" in reserved.text and "Paid" not in reserved.text

    secure = provider.create_payment_link(D("5.00"), "EUR", "order-3", idempotency_key="page-3")
    ask = httpx.post(secure.url, data={"card_number": "4000002500003155"})
    assert "confirm" in ask.text
    action = ask.text.split("action='")[1].split("'")[0]
    done = httpx.post(f"{server.url}{action}", data={"success": "1"})
    assert done.status_code == 200 and "Payment confirmed" in done.text
    declined = provider.create_payment_link(D("5.00"), "EUR", "order-4", idempotency_key="page-4")
    refused = httpx.post(declined.url, data={"card_number": "4000000000000002"})
    assert refused.status_code == 402 and "declined" in refused.text and "Try again" in refused.text
