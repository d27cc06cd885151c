"""A small, Stripe-like sandbox card provider for tests and demos (never for real money).

It behaves like a real provider in the ways that break naive integrations:

* test cards: ``4242424242424242`` succeeds, ``4000000000000002`` is declined (``card_declined``),
  ``4000002500003155`` needs 3-D Secure (``requires_action``, then ``POST /v1/payments/{id}/confirm_3ds``);
  a number failing the Luhn check is ``incorrect_number``; any other valid number succeeds;
* every ``POST /v1/...`` needs an ``Idempotency-Key``; the same key with the same body replays the stored
  response (header ``Idempotent-Replayed: true``), the same key with another body is a 422;
* ``POST /v1/sandbox/outage`` (``{"seconds": 30}``; ``0`` ends it) makes every API call answer 503 for that
  long, as a provider's outage does, so retries and dead-lettering can be seen end to end;
* webhooks are sent *asynchronously* after each state change, signed Standard Webhooks style, retried with
  backoff on 5xx/429/timeouts under the same ``webhook-id``, optionally delayed (so they arrive late or out
  of order) and duplicated (``duplicate_rate``).

Run: ``python -m services.payments.provider.sandbox --port 8090 --webhook-url http://127.0.0.1:8080/...``.
State is in memory; restart = empty provider.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import html
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from services.payments.contracts.sandbox import CARD_3DS, CARD_DECLINE, CARD_SUCCESS
from services.payments.provider.adapter import decode_webhook_secret, sign_webhook
from shared.logs import quiet_libraries
from shared.money import MoneyError, normalize_currency, parse_amount

log = logging.getLogger("oms.sandbox_provider")


Handler = Callable[[Request, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _error(status: int, code: str, message: str, type_: str = "invalid_request_error", **extra: Any) -> Any:
    return status, {"error": {"type": type_, "code": code, "message": message, **extra}}


@dataclass
class Delivery:
    webhook_id: str
    event_type: str
    attempt: int
    status_code: int | None
    error: str | None
    at: float


@dataclass
class SandboxState:
    """Everything the provider knows; exposed as ``app.state.sandbox`` for tests and debugging."""

    webhook_url: str | None
    webhook_secret: str
    duplicate_rate: float
    delay: tuple[float, float]
    retry_delays: tuple[float, ...]
    webhook_timeout: float
    api_key: str | None
    rng: random.Random
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    client: httpx.AsyncClient | None = None
    outage_until: float = 0.0

    # -- webhooks --------------------------------------------------------------------------------------

    def emit(self, event_type: str, obj: dict[str, Any]) -> None:
        """Record an event and deliver it in the background (never inside the API request)."""
        event = {
            "id": _new_id("evt"),
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": dict(obj)},
        }
        webhook_id = "msg_" + uuid.uuid4().hex
        self.events.append({"webhook_id": webhook_id, **event})
        if not self.webhook_url:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(webhook_id, event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _delay(self) -> float:
        low, high = self.delay
        return low if high <= low else self.rng.uniform(low, high)

    async def _deliver(self, webhook_id: str, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        copies = 2 if self.rng.random() < self.duplicate_rate else 1
        await asyncio.sleep(self._delay())
        for copy in range(copies):
            if copy:
                await asyncio.sleep(self._delay())
            await self._send_with_retries(webhook_id, event["type"], body)

    async def _send_with_retries(self, webhook_id: str, event_type: str, body: bytes) -> None:
        assert self.webhook_url is not None
        if self.client is None:
            self.client = httpx.AsyncClient()
        for attempt, backoff in enumerate((0.0, *self.retry_delays), start=1):
            if backoff:
                await asyncio.sleep(backoff)
            ts = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": sign_webhook(self.webhook_secret, webhook_id, ts, body),
            }
            try:
                resp = await self.client.post(
                    self.webhook_url, content=body, headers=headers, timeout=self.webhook_timeout
                )
            except httpx.TransportError as exc:
                self.deliveries.append(Delivery(webhook_id, event_type, attempt, None, repr(exc), time.time()))
                continue
            self.deliveries.append(Delivery(webhook_id, event_type, attempt, resp.status_code, None, time.time()))
            if resp.status_code < 300:
                return
            if resp.status_code < 500 and resp.status_code != 429:
                log.warning("webhook %s rejected with HTTP %s; not retrying", webhook_id, resp.status_code)
                return
        log.error("webhook %s (%s) gave up after %d attempts", webhook_id, event_type, attempt)

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    # -- state changes ---------------------------------------------------------------------------------

    def pay(self, link_id: str, card_number: str) -> tuple[int, dict[str, Any]]:
        link = self.links.get(link_id)
        if link is None:
            return _error(404, "resource_missing", f"no payment link {link_id}")
        if link["payment_id"] and self.payments[link["payment_id"]]["status"] != "failed":
            return _error(409, "link_already_paid", "this link already has a payment in progress or done")
        card = str(card_number).replace(" ", "")
        payment = {
            "id": _new_id("pay"),
            "object": "payment",
            "link_id": link_id,
            "reference": link["reference"],
            "amount": link["amount"],
            "currency": link["currency"],
            "capture_method": link["capture_method"],
            "status": "failed",
            "amount_authorized": "0",
            "amount_captured": "0",
            "amount_refunded": "0",
            "card_last4": card[-4:],
            "decline_code": None,
            "next_action": None,
            "created": int(time.time()),
        }
        self.payments[payment["id"]] = payment
        link["payment_id"] = payment["id"]
        if not luhn_ok(card):
            return self._fail(payment, "incorrect_number", "the card number is incorrect")
        if card == CARD_DECLINE:
            return self._fail(payment, "card_declined", "your card was declined")
        if card == CARD_3DS:
            payment["status"] = "requires_action"
            payment["next_action"] = {"type": "3ds", "url": f"/3ds/{payment['id']}"}
            self.emit("payment.requires_action", payment)
            return 200, dict(payment)
        return self._authorized(payment)

    def _fail(self, payment: dict[str, Any], code: str, message: str) -> tuple[int, dict[str, Any]]:
        payment["status"] = "failed"
        payment["decline_code"] = code
        payment["next_action"] = None
        self.emit("payment.failed", payment)
        return _error(402, code, message, "card_error", payment_id=payment["id"])

    def _authorized(self, payment: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        payment["next_action"] = None
        payment["amount_authorized"] = payment["amount"]
        if payment["capture_method"] == "automatic":
            payment["status"] = "succeeded"
            payment["amount_captured"] = payment["amount"]
            self.emit("payment.succeeded", payment)
        else:
            payment["status"] = "requires_capture"
            self.emit("payment.authorized", payment)
        if payment["link_id"] in self.links:
            self.links[payment["link_id"]]["status"] = "completed"
        return 200, dict(payment)

    def confirm_3ds(self, payment_id: str, success: bool) -> tuple[int, dict[str, Any]]:
        payment = self.payments.get(payment_id)
        if payment is None:
            return _error(404, "resource_missing", f"no payment {payment_id}")
        if payment["status"] != "requires_action":
            return _error(409, "payment_unexpected_state", f"payment is {payment['status']}")
        if not success:
            return self._fail(payment, "authentication_failed", "3-D Secure authentication failed")
        return self._authorized(payment)


def _fingerprint(request: Request, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body or b"{}"), sort_keys=True)
    except ValueError:
        canonical = body.decode("utf-8", "replace")
    return hashlib.sha256(f"{request.method} {request.url.path} {canonical}".encode()).hexdigest()


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def _api(handler: Handler, *, mutating: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an API handler with auth, JSON parsing and idempotency (replay / mismatch)."""

    async def endpoint(request: Request) -> Response:
        st = _state(request)
        if st.api_key and request.headers.get("authorization") != f"Bearer {st.api_key}":
            return JSONResponse(_error(401, "unauthorized", "invalid API key")[1], status_code=401)
        if time.monotonic() < st.outage_until:
            status, payload = _error(503, "service_unavailable", "the provider is down (sandbox outage)", "api_error")
            return JSONResponse(payload, status_code=status, headers={"Retry-After": "1"})
        body = await request.body()
        key = request.headers.get("idempotency-key")
        if mutating:
            if not key:
                status, payload = _error(400, "idempotency_key_required", "send an Idempotency-Key header")
                return JSONResponse(payload, status_code=status)
            fp = _fingerprint(request, body)
            stored = st.idempotency.get(key)
            if stored is not None:
                if stored[0] != fp:
                    status, payload = _error(
                        422, "idempotency_key_reused", "this Idempotency-Key was used with another request"
                    )
                    return JSONResponse(payload, status_code=status)
                return JSONResponse(stored[2], status_code=stored[1], headers={"Idempotent-Replayed": "true"})
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            status, payload = _error(400, "invalid_json", "the body must be a JSON object")
        else:
            status, payload = await handler(request, data)
        if mutating and key:
            st.idempotency[key] = (_fingerprint(request, body), status, payload)
        return JSONResponse(payload, status_code=status)

    return endpoint


def _amount(data: dict[str, Any], currency: str, name: str = "amount") -> Decimal | tuple[int, dict[str, Any]]:
    raw = data.get(name)
    if not isinstance(raw, str):
        return _error(400, "invalid_amount", f"{name} must be a decimal string, e.g. \"12.50\"")
    try:
        amount = parse_amount(raw, currency, field=name)
    except (MoneyError, TypeError) as exc:
        return _error(400, "invalid_amount", str(exc))
    if amount <= 0:
        return _error(400, "invalid_amount", f"{name} must be positive")
    return amount


async def create_link(request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    st = _state(request)
    try:
        currency = normalize_currency(str(data.get("currency", "")))
    except MoneyError as exc:
        return _error(400, "invalid_currency", str(exc))
    amount = _amount(data, currency)
    if not isinstance(amount, Decimal):
        return amount
    capture_method = data.get("capture_method", "automatic")
    if capture_method not in ("automatic", "manual"):
        return _error(400, "invalid_capture_method", "capture_method must be automatic or manual")
    link_id = _new_id("plink")
    link = {
        "id": link_id,
        "object": "payment_link",
        "url": str(request.base_url).rstrip("/") + f"/pay/{link_id}",
        "amount": str(amount),
        "currency": currency,
        "reference": str(data.get("reference", "")),
        "capture_method": capture_method,
        "status": "open",
        "payment_id": None,
    }
    st.links[link_id] = link
    return 200, dict(link)


async def pay_link(request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    card = data.get("card_number")
    if not isinstance(card, str):
        return _error(400, "invalid_card", "card_number must be a string")
    return _state(request).pay(request.path_params["link_id"], card)


async def confirm_3ds(request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return _state(request).confirm_3ds(request.path_params["payment_id"], bool(data.get("success", True)))


async def get_payment(request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    payment = _state(request).payments.get(request.path_params["payment_id"])
    if payment is None:
        return _error(404, "resource_missing", "no such payment")
    return 200, dict(payment)


async def capture(request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    st = _state(request)
    payment = st.payments.get(request.path_params["payment_id"])
    if payment is None:
        return _error(404, "resource_missing", "no such payment")
    if payment["status"] != "requires_capture":
        return _error(409, "payment_unexpected_state", f"cannot capture a payment that is {payment['status']}")
    authorized = Decimal(payment["amount_authorized"])
    amount = authorized
    if "amount" in data:
        parsed = _amount(data, payment["currency"])
        if not isinstance(parsed, Decimal):
            return parsed
        amount = parsed
    if amount > authorized:
        return _error(400, "amount_too_large", f"cannot capture {amount}, only {authorized} is authorized")
    payment["status"] = "succeeded"
    payment["amount_captured"] = str(amount)
    st.emit("payment.succeeded", payment)
    return 200, dict(payment)


async def void(request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    st = _state(request)
    payment = st.payments.get(request.path_params["payment_id"])
    if payment is None:
        return _error(404, "resource_missing", "no such payment")
    if payment["status"] not in ("requires_capture", "requires_action"):
        return _error(409, "payment_unexpected_state", f"cannot void a payment that is {payment['status']}")
    payment["status"] = "canceled"
    payment["next_action"] = None
    st.emit("payment.canceled", payment)
    return 200, dict(payment)


async def create_refund(request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    st = _state(request)
    payment = st.payments.get(str(data.get("payment_id")))
    if payment is None:
        return _error(404, "resource_missing", "no such payment")
    if payment["status"] != "succeeded":
        return _error(409, "payment_unexpected_state", f"cannot refund a payment that is {payment['status']}")
    amount = _amount(data, payment["currency"])
    if not isinstance(amount, Decimal):
        return amount
    left = Decimal(payment["amount_captured"]) - Decimal(payment["amount_refunded"])
    if amount > left:
        return _error(400, "amount_too_large", f"cannot refund {amount}, only {left} is left on the payment")
    payment["amount_refunded"] = str(Decimal(payment["amount_refunded"]) + amount)
    refund = {
        "id": _new_id("re"),
        "object": "refund",
        "payment_id": payment["id"],
        "amount": str(amount),
        "currency": payment["currency"],
        "status": "succeeded",
        "reference": data.get("reference"),
        "created": int(time.time()),
    }
    st.refunds[refund["id"]] = refund
    st.emit("refund.succeeded", refund)
    return 200, dict(refund)


async def outage(request: Request) -> Response:
    """Test control, not part of a provider's API: fail every API call for ``seconds`` (0 ends it)."""
    try:
        seconds = float((await request.json()).get("seconds", 0))
    except (ValueError, TypeError, AttributeError):
        return JSONResponse(_error(400, "invalid_request", "send {\"seconds\": <number>}")[1], status_code=400)
    st = _state(request)
    st.outage_until = time.monotonic() + max(0.0, seconds)
    return JSONResponse({"outage_seconds": max(0.0, seconds)})


async def list_events(request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return 200, {"object": "list", "data": list(_state(request).events)}


# -- hosted page (for humans in demos) ----------------------------------------------------------------

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Sandbox payment</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}input,button{{font-size:1.1rem}}</style>
</head><body><h1>Sandbox payment</h1><p>{body}</p></body></html>"""


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(body=body), status_code=status)


async def pay_page(request: Request) -> Response:
    st = _state(request)
    link = st.links.get(request.path_params["link_id"])
    if link is None:
        return _page("Unknown payment link.", 404)
    amount = f"{html.escape(link['amount'])} {html.escape(link['currency'])}"
    if request.method == "POST":
        form = parse_qs((await request.body()).decode())
        card = form.get("card_number", [""])[0]
        status, payload = st.pay(link["id"], card)
        if status != 200:
            msg = html.escape(payload["error"]["message"])
            return _page(f"Payment of {amount} failed: {msg}. <a href='/pay/{link['id']}'>Try again</a>", status)
        if payload["status"] == "requires_action":
            pid = html.escape(payload["id"])
            return _page(
                f"Your bank asks you to confirm {amount}.<form method='post' action='/3ds/{pid}'>"
                "<button name='success' value='1'>Confirm</button> "
                "<button name='success' value='0'>Fail authentication</button></form>"
            )
        if payload["status"] == "requires_capture":
            return _page(f"{amount} is reserved on your card; the shop takes it when your order ships. Thank you.")
        return _page(f"Paid {amount}. Thank you.")
    return _page(
        f"Pay <b>{amount}</b> for {html.escape(link['reference'])}.<form method='post'>"
        "<input name='card_number' value='4242424242424242' size='20'> <button>Pay</button></form>"
        f"<small>Test cards: {CARD_SUCCESS} succeeds, {CARD_DECLINE} is declined, "
        f"{CARD_3DS} asks for 3-D Secure.</small>"
    )


async def three_ds_page(request: Request) -> Response:
    form = parse_qs((await request.body()).decode())
    success = form.get("success", ["1"])[0] == "1"
    status, payload = _state(request).confirm_3ds(request.path_params["payment_id"], success)
    if status != 200:
        return _page(f"Payment failed: {html.escape(payload['error']['message'])}", status)
    if payload["status"] == "requires_capture":
        return _page("Confirmed: the amount is reserved on your card until the shop takes it. Thank you.")
    return _page("Payment confirmed. Thank you.")


def create_app(
    webhook_url: str | None,
    webhook_secret: str,
    duplicate_rate: float = 0.0,
    delay: float | tuple[float, float] = 0.0,
    *,
    retry_delays: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0),
    webhook_timeout: float = 5.0,
    api_key: str | None = None,
    seed: int | None = None,
) -> Starlette:
    """Build the sandbox app.

    ``duplicate_rate`` (0..1) is the chance a webhook is delivered twice; ``delay`` (seconds, or a
    ``(min, max)`` range) holds each delivery back so it can arrive after later events; ``retry_delays``
    is the backoff between attempts on 5xx/429/timeouts; ``seed`` makes the randomness repeatable.
    """
    decode_webhook_secret(webhook_secret)
    if not 0.0 <= duplicate_rate <= 1.0:
        raise ValueError("duplicate_rate must be between 0 and 1")
    delay_range = (float(delay), float(delay)) if isinstance(delay, int | float) else (delay[0], delay[1])
    state = SandboxState(
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        duplicate_rate=duplicate_rate,
        delay=delay_range,
        retry_delays=tuple(retry_delays),
        webhook_timeout=webhook_timeout,
        api_key=api_key,
        rng=random.Random(seed),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.client = httpx.AsyncClient()
        try:
            yield
        finally:
            await state.aclose()

    routes = [
        Route("/v1/payment_links", _api(create_link), methods=["POST"]),
        Route("/v1/payment_links/{link_id}/pay", _api(pay_link), methods=["POST"]),
        Route("/v1/payments/{payment_id}", _api(get_payment, mutating=False), methods=["GET"]),
        Route("/v1/payments/{payment_id}/capture", _api(capture), methods=["POST"]),
        Route("/v1/payments/{payment_id}/void", _api(void), methods=["POST"]),
        Route("/v1/payments/{payment_id}/confirm_3ds", _api(confirm_3ds), methods=["POST"]),
        Route("/v1/refunds", _api(create_refund), methods=["POST"]),
        Route("/v1/events", _api(list_events, mutating=False), methods=["GET"]),
        Route("/v1/sandbox/outage", outage, methods=["POST"]),
        Route("/pay/{link_id}", pay_page, methods=["GET", "POST"]),
        Route("/3ds/{payment_id}", three_ds_page, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = state
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sandbox card payment provider (tests and demos only)")
    # With no arguments (``oms run``) it works with the local gateway: ``SandboxSettings`` (OMS_SANDBOX_*) give
    # the port, where webhooks go and the secret they are signed with (the development one only in development).
    from services.payments.settings import get_sandbox_settings

    settings = get_sandbox_settings()
    parser.add_argument("--host", default=settings.sandbox_host)
    parser.add_argument("--port", type=int, default=settings.sandbox_port)
    parser.add_argument("--webhook-url", default=settings.webhook_url())
    parser.add_argument("--webhook-secret", default=None, help="default: OMS_SANDBOX_WEBHOOK_SECRET")
    parser.add_argument("--duplicate-rate", type=float, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each webhook delivery")
    parser.add_argument("--max-delay", type=float, default=None, help="random delay between --delay and this")
    parser.add_argument("--api-key", default=settings.api_key())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    quiet_libraries(logging.INFO)
    secret = args.webhook_secret or settings.webhook_secret()
    if not args.webhook_url:
        log.warning("no --webhook-url: events are recorded (GET /v1/events) but not delivered")
    delay: float | tuple[float, float] = args.delay
    if args.max_delay is not None:
        delay = (args.delay, args.max_delay)
    app = create_app(args.webhook_url, secret, args.duplicate_rate, delay, api_key=args.api_key)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
