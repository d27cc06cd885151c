"""``oms place-test-order`` and ``oms demo``: put realistic orders through the HTTP API, as clients would.

``demo`` plays a day of a small shop: orders arrive from WhatsApp, the web shop, a marketplace, chat, the
phone (manual) and the shop counter (POS); customers fill in their address, choose how to pay and add a
note (or skip it, which confirms the order); the team approves, packs, ships and delivers most of them,
cancels or rejects a few, puts some on hold and resumes them, and some carts are never completed (the
abandonment timer will pick those up). Everything goes through the public API with an API key.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

API_PREFIX = "/api/v1"

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


def random_order(rng: random.Random, channel: str | None = None, *, complete: bool = False) -> dict[str, Any]:
    """A PlaceOrder body. ``complete``: with address, payment method and a skipped note (web checkout)."""
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
        body["payment_method"] = "cash_on_delivery"
    body["_city"] = city  # used by the scenario, removed before sending
    return body


# ------------------------------------------------------------------------------------------------ HTTP helpers
def base_url(settings: Any, url: str | None = None) -> str:
    if url:
        return url.rstrip("/")
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}"


def resolve_api_key(settings: Any, given: str | None) -> str:
    if given:
        return given
    try:
        from shared.cli.apikey import read_dev_key

        key = read_dev_key(settings)
    except ImportError:
        key = None
    if not key:
        err_console.print(
            "[red]no API key: pass --api-key (or set OMS_API_KEY), or start the system once with `oms run`, "
            "which creates the developer key.[/]"
        )
        raise typer.Exit(2)
    return str(key)


def problem_text(response: Any) -> str:
    """``409 Illegal transition: ...`` from a problem+json (or any) error response."""
    try:
        problem = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"
    if not isinstance(problem, dict):
        return f"{response.status_code} {str(problem)[:200]}"
    title = problem.get("title") or ""
    detail = problem.get("detail") or ""
    return f"{response.status_code} {title}: {detail}".strip().rstrip(":")


# ------------------------------------------------------------------------------------------------ place-test-order
def place_test_order(
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="OMS_API_KEY", help="API key (default: the developer key).")
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="API base URL (default: from OMS_HTTP_HOST/PORT).")] = None,
) -> None:
    """Place one realistic test order through the HTTP API and print its number and stage."""
    import httpx

    from shared.config import get_settings

    settings = get_settings()
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


class StepFailed(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass
class DemoStats:
    placed: int = 0
    requests: int = 0
    final_stage: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    scenarios: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


class Shop:
    """One merchant team working through the API (all orders share one client and concurrency limit)."""

    def __init__(self, client: Any, stats: DemoStats, rng: random.Random) -> None:
        self.client = client
        self.stats = stats
        self.rng = rng

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            response = await self.client.request(method, f"{API_PREFIX}{path}", json=body)
        except Exception as exc:  # noqa: BLE001 - transport errors are counted, not fatal to the demo
            raise StepFailed(f"{method} {path.split('/')[1]}: {type(exc).__name__}") from None
        finally:
            self.stats.requests += 1
            self.stats.latencies.append(time.perf_counter() - t0)
        if response.status_code >= 400:
            kind = path.rstrip("/").split("/")[-1] if path.count("/") > 2 else path.strip("/")
            raise StepFailed(f"{method} …/{kind}: {problem_text(response)[:120]}")
        data: dict[str, Any] = response.json()
        return data

    async def move(self, order: dict[str, Any], to: str, reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"to": to, "expected_version": order["version"]}
        if reason:
            body["reason"] = reason
        return await self.call("POST", f"/orders/{order['id']}/transitions", body)

    async def play(self, scenario: str) -> str:
        rng = self.rng
        web_checkout = rng.random() < 0.5
        body = random_order(rng, complete=False)
        channel = body["channel"]
        complete = channel in ("web", "pos") and web_checkout and scenario != "abandon"
        if complete:
            body = random_order(rng, channel, complete=True)
        city = body.pop("_city")
        order = await self.call("POST", "/orders", body)
        self.stats.placed += 1
        self.stats.channels[channel] += 1
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
            payment = (
                {"method": "card", "paid": True}
                if rng.random() < 0.45
                else {"method": "cash_on_delivery", "paid": False}
            )
            order = await self.call("PUT", f"/orders/{oid}/payment-method", payment)
        if order["stage"] == "placed":
            note = {"note": rng.choice(CUSTOMER_NOTES)} if rng.random() < 0.25 else {"skip": True}
            order = await self.call("PUT", f"/orders/{oid}/customer-note", note)
        if rng.random() < 0.2:
            order = await self.call("POST", f"/orders/{oid}/notes", {"text": rng.choice(STAFF_NOTES)})

        if scenario == "confirmed":
            return str(order["stage"])
        if scenario == "rejected":
            return str((await self.move(order, "rejected", "Out of stock"))["stage"])
        if scenario == "held":
            return str((await self.move(order, "on_hold", rng.choice(HOLD_REASONS)))["stage"])

        target = {"approved": 1, "processed": 2, "shipped": 3}.get(scenario, 4)
        cancel_at = rng.randint(0, 2) if scenario == "cancelled" else None
        hold_at = rng.randint(0, 2) if scenario == "hold_resume" else None
        for i, stage in enumerate(FLOW[:target]):
            if i == cancel_at:
                return str((await self.move(order, "cancelled", rng.choice(CANCEL_REASONS)))["stage"])
            if i == hold_at:
                held_from = order["stage"]
                order = await self.move(order, "on_hold", rng.choice(HOLD_REASONS))
                order = await self.move(order, held_from, "Resolved")
            order = await self.move(order, stage)
        return str(order["stage"])


def _pick_scenario(rng: random.Random) -> str:
    names = [n for n, _ in SCENARIOS]
    weights = [w for _, w in SCENARIOS]
    return rng.choices(names, weights=weights, k=1)[0]


async def run_demo(
    base: str,
    key: str,
    orders: int,
    rate: float,
    concurrency: int,
    seed: int | None,
    progress: Any = None,
    task: Any = None,
) -> DemoStats:
    import httpx

    stats = DemoStats()
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}", "User-Agent": "oms-demo"}
    sem = asyncio.Semaphore(concurrency)
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
        shop = Shop(client, stats, rng)

        async def one(i: int) -> None:
            if rate > 0:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            async with sem:
                scenario = _pick_scenario(rng)
                stats.scenarios[scenario] += 1
                try:
                    stage = await shop.play(scenario)
                    stats.final_stage[stage] += 1
                except StepFailed as exc:
                    stats.errors[exc.what] += 1
            if progress is not None:
                progress.update(task, advance=1, description=_progress_text(stats))

        await asyncio.gather(*(one(i) for i in range(orders)))
    return stats


def _progress_text(stats: DemoStats) -> str:
    errors = sum(stats.errors.values())
    text = f"placed {stats.placed}, {stats.requests} requests"
    return text + (f", [red]{errors} errors[/]" if errors else "")


def demo(
    orders: Annotated[int, typer.Option("--orders", "-n", min=1, max=100_000, help="How many orders.")] = 50,
    rate: Annotated[
        float, typer.Option("--rate", min=0, help="New orders per second (0 = as fast as the concurrency allows).")
    ] = 0.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=256, help="Orders being worked on at once.")
    ] = 8,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="OMS_API_KEY", help="API key (default: the developer key).")
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="API base URL (default: from OMS_HTTP_HOST/PORT).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed, for a repeatable demo.")] = None,
) -> None:
    """Place a realistic stream of orders across channels and move them along like a merchant team would."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from shared.config import get_settings

    settings = get_settings()
    key = resolve_api_key(settings, api_key)
    base = base_url(settings, url)
    _check_reachable(base)
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
        stats = asyncio.run(run_demo(base, key, orders, rate, concurrency, seed, progress, task))
    elapsed = time.monotonic() - t0
    _print_summary(stats, elapsed)
    if stats.placed == 0:
        raise typer.Exit(1)


def _check_reachable(base: str) -> None:
    import httpx

    try:
        httpx.get(f"{base}{API_PREFIX}/health", timeout=5)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]the API at {base} did not answer ({exc!r}); is `oms run` running?[/]")
        raise typer.Exit(1) from None


def _print_summary(stats: DemoStats, elapsed: float) -> None:
    from shared.cli.bench import percentile

    order_of_stages = ["placed", "confirmed", "on_hold", "approved", "processed", "shipped", "delivered",
                       "cancelled", "rejected", "abandoned", "returned", "archived"]
    table = Table("stage", "orders", title="Orders per stage (as the demo left them)")
    for stage in sorted(stats.final_stage, key=lambda s: order_of_stages.index(s) if s in order_of_stages else 99):
        table.add_row(stage, str(stats.final_stage[stage]))
    table.add_row("[bold]total[/]", f"[bold]{sum(stats.final_stage.values())}[/]")
    console.print(table)
    channels = ", ".join(f"{c} {n}" for c, n in stats.channels.most_common())
    console.print(f"Channels: {channels or '-'}")
    lat = sorted(stats.latencies)
    console.print(
        f"{stats.placed} orders placed, {stats.requests} requests in {elapsed:.1f}s "
        f"({stats.requests / elapsed if elapsed else 0:.0f} req/s; latency p50 {percentile(lat, 50) * 1000:.0f} ms, "
        f"p99 {percentile(lat, 99) * 1000:.0f} ms)"
    )
    if stats.errors:
        errors = Table("error", "count", title="Failed steps (the order stopped there)")
        for what, n in stats.errors.most_common(10):
            errors.add_row(what, str(n))
        console.print(errors)


def new_external_ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
