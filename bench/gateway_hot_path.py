"""CPU per request of the gateway's own code on its hot routes, in process (no network, no services).

Drives the ASGI app returned by ``create_app`` directly, with the RPC client replaced by a stand-in that
answers at once with realistic replies, the API key check by the real authenticator with its cache warm,
and prints microseconds of CPU per request for each hot route. It isolates what the gateway itself costs
(FastAPI, validation, rendering, auth, batching) from the broker and the services, so a change to the
gateway's hot path can be measured on a busy machine: compare two runs made one after the other.

    .venv/bin/python bench/gateway_hot_path.py [--requests 3000] [--profile ROUTE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import time
import uuid
from typing import Any

from services.gateway.app import create_app
from services.gateway.auth import ApiKeyAuthenticator, Principal, hash_key
from services.gateway.settings import GatewaySettings

KEY = "oms_abcd1234_" + "x" * 40
PRINCIPAL = Principal(id=uuid.UUID("00000000-0000-4000-8000-000000000001"), name="bench", prefix="abcd1234")
ORDER_ID = "7f3fc1e1-ae53-4aa4-bab0-a7235ac6348b"
_ACTOR = {"type": "staff", "id": str(PRINCIPAL.id), "name": "bench"}
ORDER: dict[str, Any] = {
    "id": ORDER_ID, "number": 15047, "display_number": "#15047", "channel": "web", "stage": "placed",
    "held_from": None, "customer": {"name": "Bench Client", "phone": None, "email": "bench@example.com"},
    "currency": "EUR",
    "totals": {"subtotal": "24.90", "shipping": "0.00", "discount": "0.00", "tax": "0.00", "total": "24.90"},
    "payment_method": "card", "payment_status": "unpaid", "payment_authorized": False, "paid_at": None,
    "test": True, "item_count": 1, "placed_at": "2026-12-01T15:06:30.753408Z",
    "updated_at": "2026-12-01T15:06:30.753408Z", "version": 2,
    "items": [{"sku": "TEE-BLK-M", "name": "T-shirt", "quantity": 1, "unit_price": "24.90", "line_total": "24.90"}],
    "history": [
        {"seq": 1, "at": "2026-12-01T15:06:30.753408Z", "actor": _ACTOR, "action": "placed"},
        {"seq": 2, "at": "2026-12-01T15:06:31.253408Z", "actor": _ACTOR, "action": "customer_note_skipped"},
    ],
    "allowed_transitions": ["confirmed", "cancelled", "on_hold"],
}
LINK = {"order_id": ORDER_ID, "payment_id": "card:plink_1", "link_id": "plink_1", "url": "http://127.0.0.1/pay/plink_1",
        "amount": "24.90", "currency": "EUR", "status": "open", "capture_method": "automatic"}
PLACE_BODY = (b'{"channel":"web","customer":{"name":"Bench Client","email":"bench@example.com"},'
              b'"items":[{"sku":"TEE-BLK-M","name":"T-shirt","quantity":1,"unit_price":"24.90"}],'
              b'"currency":"EUR","payment_method":"cash_on_delivery","test":true}')


class InstantRpc:
    """Answers every call at once, as the services would (placement: each answer serialized by orders)."""

    connected = True

    def __init__(self) -> None:
        self.order_json = json.dumps(ORDER, separators=(",", ":"))

    async def call(self, service: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if method == "place_orders":
            return [{"result_json": self.order_json, "id": ORDER_ID} for _ in kwargs["requests"]]
        if method == "create_payment_link":
            return dict(LINK)
        if method == "handle_webhook":
            return {"received": True, "duplicate": False, "event_type": "payment.captured"}
        return json.loads(self.order_json)  # a fresh copy, as decoding a reply gives


# (name, method, path, body)
ROUTES: list[tuple[str, str, str, bytes]] = [
    ("place", "POST", "/api/v1/orders", PLACE_BODY),
    ("customer-note", "PUT", f"/api/v1/orders/{ORDER_ID}/customer-note", b'{"skip":true}'),
    ("payment-link", "POST", f"/api/v1/orders/{ORDER_ID}/payments/link", b"{}"),
    ("webhook", "POST", "/api/v1/payments/webhooks/sandbox", b'{"type":"payment.captured","data":{}}'),
    ("get-order", "GET", f"/api/v1/orders/{ORDER_ID}", b""),
]


def _scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8080"), (b"authorization", f"Bearer {KEY}".encode()),
               (b"user-agent", b"wrk")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080), "state": {}}


async def one(app: Any, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(_scope(method, path, body), receive, send)
    return status, b"".join(chunks)


async def main(requests: int, profile: str | None, concurrency: int) -> dict[str, float]:
    authenticator = ApiKeyAuthenticator(pool=None)  # type: ignore[arg-type]  # the cache answers every request
    authenticator._cache[hash_key(KEY)] = (time.monotonic() + 1e9, PRINCIPAL)
    app = create_app(GatewaySettings(), rpc=InstantRpc(), authenticator=authenticator, idempotency=None)
    app.state.gateway.authenticator = authenticator
    results: dict[str, float] = {}
    for name, method, path, body in ROUTES:
        status, answer = await one(app, method, path, body)
        assert status in (200, 201), (name, status, answer[:300])
        for _ in range(200):  # warm up
            await one(app, method, path, body)
        profiler = cProfile.Profile() if profile == name else None
        started = time.process_time()
        if profiler:
            profiler.enable()
        for _ in range(requests // concurrency):
            await asyncio.gather(*(one(app, method, path, body) for _ in range(concurrency)))
        if profiler:
            profiler.disable()
        spent = time.process_time() - started
        results[name] = spent / (requests // concurrency * concurrency) * 1e6
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight at once (placement batches)")
    parser.add_argument("--profile", choices=[name for name, *_ in ROUTES])
    args = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    figures = runner(main(args.requests, args.profile, args.concurrency))
    for name, micros in figures.items():
        print(f"{name:15s} {micros:8.1f} µs CPU per request")
