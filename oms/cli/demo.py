"""``oms place-test-order`` and ``oms demo``: put realistic orders through the HTTP API, as clients would.

``demo`` plays a day of a small shop: orders arrive from WhatsApp, the web shop, a marketplace, chat, the
phone (manual) and the shop counter (POS); customers fill in their address, choose how to pay and add a
note (or skip it); the team approves, packs, ships and delivers most of them, cancels or rejects a few,
puts some on hold and resumes them, and some carts are never completed (the abandonment timer will pick
those up). Everything goes through the public API with an API key.

Money moves the real way. Card customers (~45%) get a payment link (``POST /orders/{id}/payments/link``)
and pay it at the payment provider (the sandbox: ``POST /v1/payment_links/{id}/pay``), some after 3-D
Secure, a few with a declined card (some of those try again with another card, others give up); the
payment confirms the order asynchronously (provider webhook → payments → event → orders), and the demo
waits for that before the team moves the order on. Cash on delivery (~40%) and bank transfer or POS on
delivery (~15%) confirm the order at once; staff record the money by hand (``POST .../payments/manual``):
cash and POS when the order is delivered, transfers before approval (sometimes in two parts). Paid orders
that are then cancelled or rejected are refunded automatically by the payments service.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from oms.cli.common import (
    API_PREFIX,
    ApiKeyOption,
    SandboxUrlOption,
    UrlOption,
    base_url,
    check_provider,
    check_reachable,
    percentile,
    problem_text,
    resolve_api_key,
)
from oms.cli.common import settings as common_settings

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# ------------------------------------------------------------------------------------------------ sample data
FIRST_NAMES = [
    "Amira", "Lukas", "Sofia", "Mateo", "Chen", "Olivia", "Kwame", "Ines", "Jonas", "Priya", "Mehmet", "Zoé",
    "Hannah", "Ravi", "Elena", "Tomasz", "Yuki", "Fatima", "Noah", "Leonie", "Diego", "Aisha", "Finn", "Marta",
]
LAST_NAMES = [
    "Haddad", "Schneider", "Rossi", "García", "Wang", "Murphy", "Mensah", "Dubois", "Novak", "Sharma", "Yılmaz",
    "Weber", "Kowalski", "Fischer", "Costa", "Jansen", "Nakamura", "Okafor", "Lindqvist", "Papadopoulos",
]
# (city, region, postal code, country, phone prefix)
CITIES = [
    ("Berlin", None, "10115", "DE", "+49 30"),
    ("Hamburg", None, "20095", "DE", "+49 40"),
    ("München", "Bayern", "80331", "DE", "+49 89"),
    ("Köln", None, "50667", "DE", "+49 221"),
    ("Wien", None, "1010", "AT", "+43 1"),
    ("Zürich", None, "8001", "CH", "+41 44"),
    ("Amsterdam", None, "1012 AB", "NL", "+31 20"),
    ("Paris", None, "75002", "FR", "+33 1"),
    ("Lyon", None, "69002", "FR", "+33 4"),
    ("Madrid", None, "28013", "ES", "+34 91"),
    ("Milano", "MI", "20121", "IT", "+39 02"),
    ("Warszawa", None, "00-001", "PL", "+48 22"),
    ("London", None, "EC1A 1BB", "GB", "+44 20"),
    ("Dublin", None, "D02 X285", "IE", "+353 1"),
    ("Stockholm", None, "111 52", "SE", "+46 8"),
    ("New York", "NY", "10001", "US", "+1 212"),
]
STREETS = ["Hauptstraße", "Main Street", "Rue de la Paix", "Calle Mayor", "Via Roma", "Kerkstraat", "Storgatan",
           "Ulica Długa", "High Street", "Lindenallee"]
CATALOG = [
    ("TEE-BLK-M", "Organic cotton T-shirt, black, M", "24.90"),
    ("TEE-WHT-L", "Organic cotton T-shirt, white, L", "24.90"),
    ("HOOD-GRY-L", "Hoodie, heather grey, L", "59.00"),
    ("MUG-CER-01", "Ceramic mug 350 ml", "12.50"),
    ("CAP-NVY", "Baseball cap, navy", "19.95"),
    ("SOCK-3PK", "Merino socks, 3-pack", "17.40"),
    ("TOTE-NAT", "Canvas tote bag", "9.90"),
    ("BOTTLE-SS", "Stainless steel bottle 750 ml", "27.00"),
    ("NOTE-A5", "Dotted notebook A5", "8.75"),
    ("CANDLE-FIG", "Soy candle, fig", "21.30"),
]
CURRENCIES = ["EUR"] * 14 + ["USD", "USD", "GBP", "CHF", "PLN", "SEK"]
CHANNELS = ["whatsapp"] * 4 + ["web"] * 4 + ["marketplace"] * 2 + ["chat", "manual", "pos"]
CUSTOMER_NOTES = [
    "Please ring twice, the bell is broken.",
    "Gift wrap if possible, it's a birthday present!",
    "Leave it with the neighbour at number 12.",
    "Can you deliver after 6 pm?",
    "No plastic packaging please.",
]
STAFF_NOTES = [
    "Customer called to ask about delivery time.",
    "Double-check the size before packing.",
    "VIP customer: add a thank-you card.",
    "Address confirmed by phone.",
]
HOLD_REASONS = ["Waiting for stock", "Address needs confirmation", "Payment check", "After-hours order"]
CANCEL_REASONS = ["Customer changed their mind", "Ordered twice by mistake", "Found it cheaper elsewhere"]


def _ascii(text: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalnum()).lower()


def random_customer(rng: random.Random, city: tuple[Any, ...]) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    customer: dict[str, Any] = {"name": f"{first} {last}"}
    if rng.random() < 0.9:
        customer["phone"] = f"{city[4]} {rng.randint(100, 999)} {rng.randint(1000, 99999)}"
    if rng.random() < 0.7:
        domain = rng.choice(["example.com", "example.org", "mail.example.net"])
        customer["email"] = f"{_ascii(first)}.{_ascii(last)}{rng.randint(1, 99)}@{domain}"
    return customer


def random_address(rng: random.Random, city: tuple[Any, ...]) -> dict[str, Any]:
    address: dict[str, Any] = {
        "line1": f"{rng.choice(STREETS)} {rng.randint(1, 180)}",
        "city": city[0],
        "postal_code": city[2],
        "country": city[3],
    }
    if city[1]:
        address["region"] = city[1]
    if rng.random() < 0.2:
        address["line2"] = f"Apt {rng.randint(1, 40)}"
    return address


def random_items(rng: random.Random) -> list[dict[str, Any]]:
    picks = rng.sample(CATALOG, k=rng.randint(1, 4))
    return [
        {"sku": sku, "name": name, "quantity": rng.choice([1, 1, 1, 2, 2, 3]), "unit_price": price}
        for sku, name, price in picks
    ]


def random_order(
    rng: random.Random, channel: str | None = None, *, complete: bool = False, payment_method: str | None = None
) -> dict[str, Any]:
    """A PlaceOrder body. ``complete``: with address and payment method (``payment_method``, default cash on
    delivery), as a web checkout sends it; the customer's note is still to come."""
    city = rng.choice(CITIES)
    body: dict[str, Any] = {
        "channel": channel or rng.choice(CHANNELS),
        "customer": random_customer(rng, city),
        "items": random_items(rng),
        "currency": rng.choice(CURRENCIES),
        "shipping": rng.choice(["0", "4.90", "4.90", "6.50"]),
    }
    if rng.random() < 0.15:
        body["discount"] = rng.choice(["2.00", "5.00"])
    if body["channel"] == "marketplace":
        body["external_ref"] = f"MP-{rng.randint(10**8, 10**9 - 1)}"
    if complete:
        body["shipping_address"] = random_address(rng, city)
        body["payment_method"] = payment_method or "cash_on_delivery"
    body["_city"] = city  # used by the scenario, removed before sending
    return body


# ------------------------------------------------------------------------------------------------ place-test-order
def place_test_order(
    api_key: ApiKeyOption = None,
    url: UrlOption = None,
) -> None:
    """Place one realistic test order through the HTTP API and print its number and stage."""
    import httpx

    settings = common_settings()
    key = resolve_api_key(settings, api_key)
    base = base_url(settings, url)
    try:
        response = httpx.post(
            f"{base}{API_PREFIX}/test-orders", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        err_console.print(f"[red]the API at {base} did not answer ({exc!r}); is `oms run` running?[/]")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        err_console.print(f"[red]{problem_text(response)}[/]")
        raise typer.Exit(1)
    order = response.json()
    totals = order.get("totals") or {}
    console.print(
        f"Placed test order [bold]{order.get('display_number') or '#' + str(order.get('number'))}[/] "
        f"(stage: [bold]{order.get('stage')}[/], total {totals.get('total')} {order.get('currency')}, "
        f"id {order.get('id')})",
        soft_wrap=True,
    )


# ------------------------------------------------------------------------------------------------ demo
SCENARIOS: list[tuple[str, int]] = [
    ("abandon", 8),  # cart left in `placed`: the abandonment timer will move it
    ("confirmed", 10),
    ("approved", 8),
    ("processed", 8),
    ("shipped", 12),
    ("delivered", 30),
    ("cancelled", 10),
    ("hold_resume", 8),  # put on hold, resumed, then delivered
    ("held", 3),  # left on hold
    ("rejected", 3),
]
FLOW = ["approved", "processed", "shipped", "delivered"]
FLOW_SCENARIOS = frozenset({"approved", "processed", "shipped", "delivered", "cancelled", "hold_resume"})

# How customers pay: card through the payment link (~45%), cash on delivery (~40%), bank transfer or POS on
# delivery (~15%). Manual methods confirm the order at once; a card order waits for its payment.
PAYMENT_METHODS: list[tuple[str, int]] = [
    ("card", 45),
    ("cash_on_delivery", 40),
    ("bank_transfer", 9),
    ("pos_on_delivery", 6),
]
CARD_3DS_SHARE = 0.15  # of card payers: the bank asks for 3-D Secure, the customer confirms
CARD_DECLINE_SHARE = 0.15  # of card payers: the first card is declined (HTTP 402)
DECLINED_RETRY_SHARE = 0.6  # of those: the customer pays the same link again with a good card
SPLIT_TRANSFER_SHARE = 0.35  # of bank transfers: the money comes in two parts that add up

# What the demo did about the money, one story per order (the rows of the summary's payments table).
CARD_PAID = "card: paid"
CARD_PAID_3DS = "card: paid after 3-D Secure"
CARD_RETRIED = "card: declined, then paid with another card"
CARD_GAVE_UP = "card: declined, customer gave up (order stays placed)"
COD_COLLECTED = "cash on delivery: collected by the courier"
POS_COLLECTED = "POS on delivery: paid at the door"
TRANSFER_ONE = "bank transfer: received in one payment"
TRANSFER_SPLIT = "bank transfer: received in two parts"
PAYMENT_STORIES = [CARD_PAID, CARD_PAID_3DS, CARD_RETRIED, CARD_GAVE_UP, COD_COLLECTED, POS_COLLECTED,
                   TRANSFER_ONE, TRANSFER_SPLIT]
MONEY_IN_STORIES = frozenset(PAYMENT_STORIES) - {CARD_GAVE_UP}
PAYMENT_STATUSES = ["unpaid", "in_progress", "partially_paid", "paid", "partially_refunded", "refunded"]

_ID_SEGMENT = re.compile(r"^(?:[0-9a-fA-F-]{32,36}|#?\d+|(?:plink|pay)_[0-9a-f]+)$")


class StepFailed(Exception):
    def __init__(self, what: str, status: int | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.status = status


def _route(path: str) -> str:
    """``/orders/<uuid>/payments/link`` -> ``…/payments/link``: errors group by route, not by order."""
    parts = [("{id}" if _ID_SEGMENT.match(p) else p) for p in path.strip("/").split("/")]
    if len(parts) > 2:
        return "…/" + "/".join(parts[2:])
    return "/".join(parts)


@dataclass
class OrderRecord:
    """One demo order: what the demo did with it, and what the system says at the end."""

    id: str
    number: int
    scenario: str
    method: str | None = None
    story: str | None = None  # one of PAYMENT_STORIES, or None when no money moved
    expect_status: str | None = None  # the payment status the demo's actions should lead to
    stage: str | None = None  # as the demo left it
    payment_status: str | None = None  # read back at the end
    payment_ids: list[str] = field(default_factory=list)  # card payments at the provider


@dataclass
class DemoStats:
    placed: int = 0
    requests: int = 0
    provider_requests: int = 0
    final_stage: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    scenarios: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    payments: Counter[str] = field(default_factory=Counter)  # payment story -> orders
    orders: list[OrderRecord] = field(default_factory=list)

    def payment_table(self) -> dict[str, Counter[str]]:
        """method -> final payment status -> orders (orders that were placed)."""
        table: dict[str, Counter[str]] = {}
        for rec in self.orders:
            table.setdefault(rec.method or "none", Counter())[rec.payment_status or "?"] += 1
        return table


class Shop:
    """One merchant team working through the API (all orders share one client and concurrency limit), and its
    customers paying card links at the payment provider (``provider``: a client of the sandbox's base URL)."""

    def __init__(
        self,
        client: Any,
        stats: DemoStats,
        rng: random.Random,
        provider: Any = None,
        *,
        confirm_timeout: float = 20.0,
        known_timeout: float = 10.0,
    ) -> None:
        self.client = client
        self.stats = stats
        self.rng = rng
        self.provider = provider
        self.confirm_timeout = confirm_timeout
        self.known_timeout = known_timeout

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            response = await self.client.request(method, f"{API_PREFIX}{path}", json=body)
        except Exception as exc:  # noqa: BLE001 - transport errors are counted, not fatal to the demo
            raise StepFailed(f"{method} {_route(path)}: {type(exc).__name__}") from None
        finally:
            self.stats.requests += 1
            self.stats.latencies.append(time.perf_counter() - t0)
        if response.status_code >= 400:
            raise StepFailed(f"{method} {_route(path)}: {problem_text(response)[:120]}", response.status_code)
        data: dict[str, Any] = response.json()
        return data

    async def call_known(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A payments call. The payments service learns of an order from its ``order.placed`` event, a moment
        after the order was placed: until then it answers 404, so that is retried for a while."""
        deadline = time.monotonic() + self.known_timeout
        delay = 0.05
        while True:
            try:
                return await self.call(method, path, body)
            except StepFailed as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def move(self, order: dict[str, Any], to: str, reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"to": to, "expected_version": order["version"]}
        if reason:
            body["reason"] = reason
        return await self.call("POST", f"/orders/{order['id']}/transitions", body)

    # -- the customer at the payment provider ---------------------------------------------------------------

    async def at_provider(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST`` to the provider as the customer's browser would (every POST needs an Idempotency-Key);
        a 402 (declined) is an answer, not an error."""
        if self.provider is None:
            raise StepFailed("card payment: no payment provider URL")
        kind = path.rstrip("/").split("/")[-1]
        try:
            response = await self.provider.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        except Exception as exc:  # noqa: BLE001
            raise StepFailed(f"POST provider …/{kind}: {type(exc).__name__}") from None
        finally:
            self.stats.provider_requests += 1
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code >= 400 and response.status_code != 402:
            error = data.get("error") if isinstance(data, dict) else None
            code = error.get("code") if isinstance(error, dict) else response.text[:80]
            raise StepFailed(f"POST provider …/{kind}: {response.status_code} {code}", response.status_code)
        return response.status_code, data if isinstance(data, dict) else {}

    async def pay_link(self, link_id: str, card: str, rec: OrderRecord) -> tuple[int, dict[str, Any]]:
        status, payment = await self.at_provider(f"/v1/payment_links/{link_id}/pay", {"card_number": card})
        if status == 200 and payment.get("status") == "requires_action":  # 3-D Secure: the customer confirms
            status, payment = await self.at_provider(f"/v1/payments/{payment['id']}/confirm_3ds", {"success": True})
        if status == 200 and payment.get("status") != "succeeded":
            raise StepFailed(f"card payment: provider says {payment.get('status')}")
        if status == 200:
            rec.payment_ids.append(str(payment["id"]))
        return status, payment

    async def pay_by_card(self, order: dict[str, Any], rec: OrderRecord, rng: random.Random) -> dict[str, Any]:
        """The customer opens the payment link and pays; the order is confirmed when the payment arrives
        (provider → webhook → payments → event → orders), so wait for that before anyone moves it on."""
        # Imported here: the CLI module must not load httpx/starlette before ``oms run`` monkey-patches.
        from services.payments.contracts.sandbox import CARD_3DS, CARD_DECLINE, CARD_SUCCESS

        oid = order["id"]
        link = await self.call_known("POST", f"/orders/{oid}/payments/link")
        r = rng.random()
        if r < CARD_DECLINE_SHARE:
            status, _ = await self.pay_link(link["link_id"], CARD_DECLINE, rec)
            if status != 402:
                raise StepFailed(f"card payment: a declined card was answered with HTTP {status}")
            if rng.random() >= DECLINED_RETRY_SHARE:
                rec.story, rec.expect_status = CARD_GAVE_UP, "unpaid"
                return order
            # The customer asks again: the gateway hands out the same link while the order is unpaid.
            link = await self.call_known("POST", f"/orders/{oid}/payments/link")
            status, _ = await self.pay_link(link["link_id"], CARD_SUCCESS, rec)
            story = CARD_RETRIED
        elif r < CARD_DECLINE_SHARE + CARD_3DS_SHARE:
            status, _ = await self.pay_link(link["link_id"], CARD_3DS, rec)
            story = CARD_PAID_3DS
        else:
            status, _ = await self.pay_link(link["link_id"], CARD_SUCCESS, rec)
            story = CARD_PAID
        if status != 200:
            raise StepFailed(f"card payment: a good card was answered with HTTP {status}")
        rec.story, rec.expect_status = story, "paid"
        return await self.wait_confirmed(oid)

    async def wait_confirmed(self, oid: str) -> dict[str, Any]:
        """Poll the order until it leaves ``placed`` (bounded); returns it with its fresh ``version``."""
        deadline = time.monotonic() + self.confirm_timeout
        delay = 0.05
        while True:
            order = await self.call("GET", f"/orders/{oid}")
            if order["stage"] != "placed":
                return order
            if time.monotonic() > deadline:
                raise StepFailed(f"card paid, but the order was not confirmed within {self.confirm_timeout:.0f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    # -- staff recording money received by hand -------------------------------------------------------------

    async def record_manual(self, order: dict[str, Any], amount: Decimal, reference: str) -> dict[str, Any]:
        # The method is sent along: payments may not have seen the order's payment_method_set event yet.
        body = {"amount": str(amount), "reference": reference, "method": order["payment_method"]}
        return await self.call_known("POST", f"/orders/{order['id']}/payments/manual", body)

    async def bank_transfer(self, order: dict[str, Any], rec: OrderRecord, rng: random.Random) -> None:
        """The transfer arrives before the team approves the order, sometimes in two parts that add up."""
        summary = await self.call_known("GET", f"/orders/{order['id']}/payments")
        due = Decimal(summary["balance_due"])
        if due <= 0:
            return
        number = order["number"]
        if rng.random() < SPLIT_TRANSFER_SHARE and due >= 2:
            first = (due * rng.randint(30, 70) / 100).quantize(due, rounding=ROUND_DOWN)
            after = await self.record_manual(order, first, f"TRX-{number}-1")
            await self.record_manual(order, Decimal(after["balance_due"]), f"TRX-{number}-2")
            rec.story = TRANSFER_SPLIT
        else:
            await self.record_manual(order, due, f"TRX-{number}")
            rec.story = TRANSFER_ONE
        rec.expect_status = "paid"

    async def collect_on_delivery(self, order: dict[str, Any], rec: OrderRecord) -> None:
        """Cash or card at the door: the courier collected the money; staff record it."""
        summary = await self.call_known("GET", f"/orders/{order['id']}/payments")
        due = Decimal(summary["balance_due"])
        if due <= 0:
            return
        cod = order["payment_method"] == "cash_on_delivery"
        await self.record_manual(order, due, f"{'COD' if cod else 'POS'}-{order['number']}")
        rec.story, rec.expect_status = (COD_COLLECTED if cod else POS_COLLECTED), "paid"

    # -- one order's life -------------------------------------------------------------------------------------

    async def play(self, scenario: str, rng: random.Random | None = None) -> str:
        """Place one order and live its ``scenario``; returns the stage the demo left it in."""
        rng = rng or self.rng
        method = _pick_weighted(rng, PAYMENT_METHODS)
        web_checkout = rng.random() < 0.5
        body = random_order(rng, complete=False)
        channel = body["channel"]
        complete = channel in ("web", "pos") and web_checkout and scenario != "abandon"
        if complete:
            body = random_order(rng, channel, complete=True, payment_method=method)
        city = body.pop("_city")
        order = await self.call("POST", "/orders", body)
        self.stats.placed += 1
        self.stats.channels[channel] += 1
        rec = OrderRecord(id=str(order["id"]), number=int(order["number"]), scenario=scenario,
                          method=order.get("payment_method"))
        self.stats.orders.append(rec)
        rec.stage = await self._live(order, rec, scenario, method, city, rng)
        return rec.stage

    async def _live(
        self, order: dict[str, Any], rec: OrderRecord, scenario: str, method: str, city: tuple[Any, ...],
        rng: random.Random,
    ) -> str:
        oid = order["id"]
        if scenario == "abandon":
            if rng.random() < 0.4:  # gave an address, never chose how to pay
                order = await self.call("PUT", f"/orders/{oid}/address", {"address": random_address(rng, city)})
            return str(order["stage"])
        if scenario == "cancelled" and rng.random() < 0.3:
            order = await self.move(order, "cancelled", rng.choice(CANCEL_REASONS))
            return str(order["stage"])

        # The customer completes the order (each step is a separate message in a chat, a form in the shop).
        if order.get("shipping_address") is None:
            order = await self.call("PUT", f"/orders/{oid}/address", {"address": random_address(rng, city)})
        if order.get("payment_method") is None:
            order = await self.call("PUT", f"/orders/{oid}/payment-method", {"method": method})
        rec.method = method = str(order["payment_method"])
        if order["stage"] == "placed" and order.get("customer_note") is None and not order.get(
            "customer_note_skipped"
        ):
            note = {"note": rng.choice(CUSTOMER_NOTES)} if rng.random() < 0.25 else {"skip": True}
            order = await self.call("PUT", f"/orders/{oid}/customer-note", note)
        if rng.random() < 0.2:
            order = await self.call("POST", f"/orders/{oid}/notes", {"text": rng.choice(STAFF_NOTES)})
        if method == "card":  # a card order is confirmed by its payment, not by the choice of method
            order = await self.pay_by_card(order, rec, rng)
            if order["stage"] == "placed":  # declined and gave up: the order waits, unpaid
                return str(order["stage"])

        if scenario == "confirmed":
            return str(order["stage"])
        if scenario == "rejected":  # a paid order is refunded automatically
            rejected = await self.move(order, "rejected", "Out of stock")
            if rec.expect_status == "paid":
                rec.expect_status = "refunded"
            return str(rejected["stage"])
        if scenario == "held":
            return str((await self.move(order, "on_hold", rng.choice(HOLD_REASONS)))["stage"])

        if method == "bank_transfer" and scenario in FLOW_SCENARIOS:
            await self.bank_transfer(order, rec, rng)  # the payment projection does not bump the version
        target = {"approved": 1, "processed": 2, "shipped": 3}.get(scenario, 4)
        cancel_at = rng.randint(0, 2) if scenario == "cancelled" else None
        hold_at = rng.randint(0, 2) if scenario == "hold_resume" else None
        for i, stage in enumerate(FLOW[:target]):
            if i == cancel_at:  # paid orders (card, transfer) are refunded automatically
                cancelled = await self.move(order, "cancelled", rng.choice(CANCEL_REASONS))
                if rec.expect_status == "paid":
                    rec.expect_status = "refunded"
                return str(cancelled["stage"])
            if i == hold_at:
                held_from = order["stage"]
                order = await self.move(order, "on_hold", rng.choice(HOLD_REASONS))
                order = await self.move(order, held_from, "Resolved")
            order = await self.move(order, stage)
        if order["stage"] == "delivered" and method in ("cash_on_delivery", "pos_on_delivery"):
            await self.collect_on_delivery(order, rec)
        return str(order["stage"])


def _pick_weighted(rng: random.Random, table: list[tuple[str, int]]) -> str:
    return rng.choices([n for n, _ in table], weights=[w for _, w in table], k=1)[0]


def _pick_scenario(rng: random.Random) -> str:
    return _pick_weighted(rng, SCENARIOS)


async def read_back(client: Any, stats: DemoStats, concurrency: int, settle_seconds: float) -> None:
    """Read every order's payment status as the system shows it. Payments reach the order through events, so
    orders whose status is not yet what the demo's actions lead to (paid, refunded after a cancellation) are
    read again for up to ``settle_seconds``. Not counted in the demo's requests; failures leave ``?``."""
    sem = asyncio.Semaphore(concurrency)

    async def read(rec: OrderRecord) -> None:
        async with sem:
            try:
                response = await client.get(f"{API_PREFIX}/orders/{rec.id}")
                if response.status_code == 200:
                    rec.payment_status = response.json().get("payment_status")
            except Exception:  # noqa: BLE001 - a missing read-back is shown as "?"
                pass

    pending = list(stats.orders)
    deadline = time.monotonic() + settle_seconds
    while pending:
        await asyncio.gather(*(read(rec) for rec in pending))
        pending = [r for r in pending if r.expect_status is not None and r.payment_status != r.expect_status]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)


async def run_demo(
    base: str,
    key: str,
    orders: int,
    rate: float,
    concurrency: int,
    seed: int | None,
    progress: Any = None,
    task: Any = None,
    *,
    sandbox: str | None = None,
    confirm_timeout: float = 20.0,
    settle_seconds: float = 15.0,
    transport: Any = None,
) -> DemoStats:
    """Play ``orders`` orders against the API at ``base`` (without ``/api/v1``); card payments go to the
    provider at ``sandbox`` (default: ``OMS_SANDBOX_PROVIDER_URL``). Each order draws from its own random
    generator (seeded from ``seed``), so a seed gives the same orders and choices whatever the interleaving.
    ``transport``: an httpx transport for both clients (tests)."""
    import httpx

    if sandbox is None:
        sandbox = common_settings().sandbox_provider_url
    stats = DemoStats()
    rng = random.Random(seed)
    order_seeds = [rng.getrandbits(64) for _ in range(orders)]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}", "User-Agent": "oms-demo"}
    sem = asyncio.Semaphore(concurrency)
    start = time.monotonic()
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30, transport=transport) as client,
        httpx.AsyncClient(base_url=sandbox.rstrip("/"), headers={"User-Agent": "oms-demo-customer"}, limits=limits,
                          timeout=30, transport=transport) as provider,
    ):
        shop = Shop(client, stats, rng, provider, confirm_timeout=confirm_timeout)

        async def one(i: int) -> None:
            if rate > 0:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            async with sem:
                order_rng = random.Random(order_seeds[i])
                scenario = _pick_scenario(order_rng)
                stats.scenarios[scenario] += 1
                try:
                    stage = await shop.play(scenario, order_rng)
                    stats.final_stage[stage] += 1
                except StepFailed as exc:
                    stats.errors[exc.what] += 1
                except Exception as exc:  # noqa: BLE001 - a bug or an odd answer: counted, never fatal
                    stats.errors[f"unexpected: {type(exc).__name__}: {str(exc)[:100]}"] += 1
            if progress is not None:
                progress.update(task, advance=1, description=_progress_text(stats))

        await asyncio.gather(*(one(i) for i in range(orders)))
        stats.payments.update(rec.story for rec in stats.orders if rec.story)
        if progress is not None:
            progress.update(task, description=_progress_text(stats) + ", reading payment statuses")
        await read_back(client, stats, concurrency, settle_seconds)
    return stats


def _progress_text(stats: DemoStats) -> str:
    errors = sum(stats.errors.values())
    paid = sum(1 for r in stats.orders if r.story in MONEY_IN_STORIES)
    text = f"placed {stats.placed}, paid {paid}, {stats.requests} requests"
    return text + (f", [red]{errors} errors[/]" if errors else "")


def demo(
    orders: Annotated[int, typer.Option("--orders", "-n", min=1, max=100_000, help="How many orders.")] = 50,
    rate: Annotated[
        float, typer.Option("--rate", min=0, help="New orders per second (0 = as fast as the concurrency allows).")
    ] = 0.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=256, help="Orders being worked on at once.")
    ] = 8,
    api_key: ApiKeyOption = None,
    url: UrlOption = None,
    sandbox_url: SandboxUrlOption = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed, for a repeatable demo.")] = None,
) -> None:
    """Place a realistic stream of orders across channels, pay for them (card links at the sandbox provider,
    cash on delivery, bank transfers) and move them along like a merchant team would."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    settings = common_settings()
    key = resolve_api_key(settings, api_key)
    base = base_url(settings, url)
    sandbox = (sandbox_url or settings.sandbox_provider_url).rstrip("/")
    check_reachable(base)
    check_provider(sandbox)
    t0 = time.monotonic()
    with Progress(
        TextColumn("[bold]demo[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    ) as progress:
        task = progress.add_task("starting", total=orders)
        stats = asyncio.run(
            run_demo(base, key, orders, rate, concurrency, seed, progress, task, sandbox=sandbox)
        )
    elapsed = time.monotonic() - t0
    _print_summary(stats, elapsed)
    if stats.placed == 0:
        raise typer.Exit(1)


def _print_summary(stats: DemoStats, elapsed: float) -> None:
    order_of_stages = ["placed", "confirmed", "on_hold", "approved", "processed", "shipped", "delivered",
                       "cancelled", "rejected", "abandoned", "returned", "archived"]
    table = Table("stage", "orders", title="Orders per stage (as the demo left them)")
    for stage in sorted(stats.final_stage, key=lambda s: order_of_stages.index(s) if s in order_of_stages else 99):
        table.add_row(stage, str(stats.final_stage[stage]))
    table.add_row("[bold]total[/]", f"[bold]{sum(stats.final_stage.values())}[/]")
    console.print(table)
    _print_payments(stats)
    channels = ", ".join(f"{c} {n}" for c, n in stats.channels.most_common())
    console.print(f"Channels: {channels or '-'}")
    lat = sorted(stats.latencies)
    console.print(
        f"{stats.placed} orders placed, {stats.requests} requests in {elapsed:.1f}s "
        f"({stats.requests / elapsed if elapsed else 0:.0f} req/s; latency p50 {percentile(lat, 50) * 1000:.0f} ms, "
        f"p99 {percentile(lat, 99) * 1000:.0f} ms), {stats.provider_requests} requests at the payment provider"
    )
    if stats.errors:
        errors = Table("error", "count", title="Failed steps (the order stopped there)")
        for what, n in stats.errors.most_common(10):
            errors.add_row(what, str(n))
        console.print(errors)


METHOD_ORDER = ["card", "cash_on_delivery", "bank_transfer", "pos_on_delivery", "none"]


def _print_payments(stats: DemoStats) -> None:
    """Two views of the money: the payment status each order shows at the end, by method; and what customers
    and staff did (card paid, 3-D Secure, declined, collected on delivery, transfers)."""
    by_method = stats.payment_table()
    if by_method:
        seen = {status for counts in by_method.values() for status in counts}
        statuses = [s for s in PAYMENT_STATUSES if s in seen] + sorted(seen - set(PAYMENT_STATUSES))
        table = Table("method", *statuses, "total", title="Payment status by method (as the orders show it)")
        for method in sorted(by_method, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99):
            counts = by_method[method]
            table.add_row(method, *(str(counts[s]) if counts[s] else "·" for s in statuses),
                          str(sum(counts.values())))
        console.print(table)
    if stats.payments:
        stories = Table("what happened", "orders", title="Payments (what customers and staff did)")
        for story in PAYMENT_STORIES:
            if stats.payments[story]:
                stories.add_row(story, str(stats.payments[story]))
        refunded = sum(1 for r in stats.orders if r.expect_status == "refunded")
        if refunded:
            stories.add_row("paid, then cancelled or rejected: refunded automatically", str(refunded))
        console.print(stories)


def new_external_ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
