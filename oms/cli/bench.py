"""``oms bench place``, ``oms bench pay`` and ``oms bench abandon``: how fast do orders go through the system?

``oms bench`` alone (or ``oms bench all``) runs every part in one go, next to the machine's raw limits:
see ``oms.cli.bench_all``.

``place``: for each client count, N concurrent workers each place orders one after another
(``POST /api/v1/orders``) until the level's order count is reached; orders/s = orders placed / wall time,
latency percentiles are per request. Meanwhile a subscriber bound to ``order.placed.v1`` on ``oms.events``
records when each order's event arrives: commit→published lag = receive time − the CloudEvent's ``time``
(set in the placing transaction), relay events/s = events received / time between the first and the last
receipt.

``pay``: placed → paid → confirmed. Each worker places a card order with its address, skips the customer's
note, creates the payment link and pays it at the (sandbox) provider with a good card; the order is done
when its ``order.stage_changed.v1`` event to ``confirmed`` arrives on the bus (provider webhook → gateway →
payments → ``payment.status_changed.v1`` → orders → event). Confirmed orders/s = confirmed orders / time
from the first placement to the last confirmation; end-to-end latency = confirmation received − placement
request sent; and the p50 of each HTTP step.

``abandon``: how fast the abandonment timer abandons a backlog of stale orders. Against a system started with a
short abandonment window (``OMS_ABANDON_AFTER_SECONDS=20 oms run``), it places N test orders without an
address over HTTP, then waits for each one's ``order.stage_changed.v1`` to ``abandoned`` on the bus. Each event
says when its batch began (its data's ``at``: the time the timer's domain decision used) and when it was
written (the CloudEvent's ``time``); batches that follow each other within half a second form one check.
Abandoned orders/s = the largest check's orders / (its last write − its first batch's start); the largest batch
seen is the batch size the service used.

Bounded on purpose: at most ``--orders`` per level and ``--max-seconds`` per level.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from oms.cli import bench_all
from oms.cli.common import (
    ApiKeyOption,
    SandboxUrlOption,
    UrlOption,
    base_url,
    check_provider,
    check_reachable,
    percentile,
    print_machine,
    problem_text,
    resolve_api_key,
)
from oms.cli.common import settings as common_settings

app = typer.Typer(
    help="Benchmarks against a running system (local only). With no sub-command (or `all`): every figure in "
    "one run, see `oms bench all --help`.",
    invoke_without_command=True,
)
app.callback()(bench_all.bench_everything)
app.command("all")(bench_all.bench_everything)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


ClientsOption = Annotated[str, typer.Option("--clients", help="Client counts to measure, comma-separated.")]


# ------------------------------------------------------------------------------------------------ event listener
def event_kind(event: dict[str, Any]) -> str:
    """What a listener files an event under: its type, plus the stage or status it moved to, if any
    (``order.stage_changed.v1:confirmed``, ``payment.status_changed.v1:paid``, ``order.placed.v1``)."""
    kind = str(event["type"])
    data = event.get("data")
    if isinstance(data, dict):
        to = data.get("to_stage") or data.get("status")
        if isinstance(to, str) and to:
            return f"{kind}:{to}"
    return kind


PLACED = "order.placed.v1"
CONFIRMED = "order.stage_changed.v1:confirmed"


class EventListener(threading.Thread):
    """Receives events of some routing keys on ``oms.events`` in a thread of its own (pika's
    BlockingConnection is single-threaded) and records, per kind (:func:`event_kind`) and subject (order id),
    the first receipt: (receive time, lag = receive time − the CloudEvent's ``time``)."""

    def __init__(self, amqp_url: str, routing_keys: Iterable[str] = (PLACED,)) -> None:
        super().__init__(name="bench-listener", daemon=True)
        self.amqp_url = amqp_url
        self.routing_keys = tuple(routing_keys)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        # kind -> subject (order id) -> (receive time, lag seconds)
        self.received: dict[str, dict[str, tuple[float, float]]] = {}

    def run(self) -> None:
        import pika

        try:
            params = pika.URLParameters(self.amqp_url)
            params.connection_attempts = 1
            connection = pika.BlockingConnection(params)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
            self.ready.set()
            return
        try:
            channel = connection.channel()
            channel.exchange_declare("oms.events", "topic", durable=True)
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            for routing_key in self.routing_keys:
                channel.queue_bind(queue, "oms.events", routing_key=routing_key)
            channel.basic_consume(queue, self._on_message, auto_ack=True)
            self.ready.set()
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=0.2)
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
            self.ready.set()
        finally:
            try:
                connection.close()
            except Exception:  # noqa: BLE001
                pass

    def _on_message(self, ch: Any, method: Any, properties: Any, body: bytes) -> None:
        now = time.time()
        try:
            event = json.loads(body)
            sent = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
            subject = str(event["subject"])
            kind = event_kind(event)
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        with self._lock:
            self.received.setdefault(kind, {}).setdefault(subject, (now, now - sent))

    def received_for(self, subjects: Iterable[str], kind: str = PLACED) -> dict[str, tuple[float, float]]:
        """subject -> (receive time, lag) of the ``kind`` events received for these subjects."""
        with self._lock:
            got = self.received.get(kind, {})
            return {s: got[s] for s in subjects if s in got}

    def snapshot(self, subjects: set[str], kind: str = PLACED) -> list[tuple[float, float]]:
        return list(self.received_for(subjects, kind).values())

    def start_and_wait(self, timeout: float = 10.0) -> bool:
        """Start, and wait until the queue is bound (True) or subscribing failed (False, see ``error``)."""
        self.start()
        self.ready.wait(timeout)
        return self.error is None and self.ready.is_set()

    def stop(self) -> None:
        self._stopping.set()


class PlacedListener(EventListener):
    """``order.placed.v1`` only (``oms bench place``)."""

    def __init__(self, amqp_url: str) -> None:
        super().__init__(amqp_url, (PLACED,))


# ------------------------------------------------------------------------------------------------ placing
@dataclass
class LevelResult:
    clients: int
    placed: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    order_ids: set[str] = field(default_factory=set)
    first_error: str | None = None
    events: int = 0
    lags: list[float] = field(default_factory=list)
    relay_rate: float = 0.0


def _order_body(rng: random.Random) -> dict[str, Any]:
    from oms.cli.demo import random_address, random_order

    body = random_order(rng, "web")
    city = body.pop("_city")
    body["shipping_address"] = random_address(rng, city)
    body["payment_method"] = "cash_on_delivery"
    body["test"] = True  # benchmark orders are not real business
    return body


async def place_level(
    base: str,
    key: str,
    clients: int,
    orders: int,
    max_seconds: float,
    make_body: Callable[[random.Random], dict[str, Any]] = _order_body,
) -> LevelResult:
    import httpx

    result = LevelResult(clients)
    rng = random.Random(clients)
    bodies = [make_body(rng) for _ in range(orders)]
    remaining = iter(range(orders))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}", "User-Agent": "oms-bench"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
        # Warm up the connections (not measured).
        await asyncio.gather(*(client.get("/api/v1/health") for _ in range(clients)))
        deadline = time.monotonic() + max_seconds

        async def worker() -> None:
            for i in remaining:
                if time.monotonic() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    response = await client.post("/api/v1/orders", json=bodies[i])
                except httpx.HTTPError as exc:
                    result.errors += 1
                    result.first_error = result.first_error or repr(exc)
                    continue
                result.latencies.append(time.perf_counter() - t0)
                if response.status_code == 201:
                    result.placed += 1
                    result.order_ids.add(str(response.json()["id"]))
                else:
                    result.errors += 1
                    result.first_error = result.first_error or problem_text(response)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        result.seconds = time.perf_counter() - start
    result.latencies.sort()
    return result


def _collect_events(listener: PlacedListener, result: LevelResult, wait: float) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and len(listener.snapshot(result.order_ids)) < len(result.order_ids):
        time.sleep(0.1)
    got = listener.snapshot(result.order_ids)
    result.events = len(got)
    result.lags = sorted(lag for _, lag in got)
    if len(got) >= 2:
        times = [t for t, _ in got]
        span = max(times) - min(times)
        result.relay_rate = len(got) / span if span > 0 else 0.0


def _parse_clients(value: str) -> list[int]:
    try:
        counts = [int(p) for p in value.split(",") if p.strip()]
    except ValueError:
        raise typer.BadParameter("a comma-separated list of numbers, e.g. 1,8,32") from None
    if not counts or any(c < 1 or c > 512 for c in counts):
        raise typer.BadParameter("client counts must be between 1 and 512")
    return counts


@app.command()
def place(
    clients: ClientsOption = "1,8,32",
    orders: Annotated[
        int, typer.Option("--orders", "-n", min=1, max=100_000, help="Orders per client count.")
    ] = 300,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", min=1, help="Stop placing at a client count after this long.")
    ] = 60.0,
    event_wait: Annotated[
        float, typer.Option("--event-wait", min=0, help="How long to wait for the last events after placing.")
    ] = 15.0,
) -> None:
    """Orders/s and latency of placing orders over HTTP, and the commit→published lag of their events."""
    counts = _parse_clients(clients)
    settings = common_settings()
    key = resolve_api_key(settings, api_key)
    base = base_url(settings, url)

    print_machine()
    console.print(f"[bold]target[/]: {base}  ({orders} orders per level, levels {counts})")

    listener = PlacedListener(settings.amqp_url)
    listener.start()
    listener.ready.wait(10)
    if listener.error is not None or not listener.ready.is_set():
        err_console.print(f"[red]cannot subscribe to oms.events: {listener.error!r}[/]")
        raise typer.Exit(1)

    results: list[LevelResult] = []
    try:
        for c in counts:
            console.print(f"placing {orders} orders with {c} client(s)…")
            result = asyncio.run(place_level(base, key, c, orders, max_seconds))
            _collect_events(listener, result, event_wait)
            results.append(result)
            if result.placed == 0:
                err_console.print(f"[red]no order was placed: {result.first_error}[/]")
                break
    except KeyboardInterrupt:
        err_console.print("interrupted.")
    finally:
        listener.stop()
        listener.join(5)

    table = Table(
        "clients", "placed", "errors", "orders/s", "p50 ms", "p99 ms", "events", "lag p50 ms", "lag p99 ms",
        "relay ev/s", title="oms bench place",
    )
    for r in results:
        table.add_row(
            str(r.clients),
            str(r.placed),
            str(r.errors),
            f"{r.placed / r.seconds:.0f}" if r.seconds else "-",
            f"{percentile(r.latencies, 50) * 1000:.1f}",
            f"{percentile(r.latencies, 99) * 1000:.1f}",
            f"{r.events}/{r.placed}",
            f"{percentile(r.lags, 50) * 1000:.1f}" if r.lags else "-",
            f"{percentile(r.lags, 99) * 1000:.1f}" if r.lags else "-",
            f"{r.relay_rate:.0f}" if r.relay_rate else "-",
        )
    console.print(table)
    for r in results:
        if r.first_error:
            err_console.print(f"[yellow]{r.clients} client(s): first error: {r.first_error}[/]")


# ------------------------------------------------------------------------------------------------ paying
PAY_STEPS = ("place", "note", "link", "pay")


@dataclass
class PayLevelResult:
    clients: int
    started: int = 0  # placement requests sent
    paid: int = 0  # orders whose card payment the provider accepted
    errors: int = 0
    first_error: str | None = None
    link_retries: int = 0  # link requests answered 404: payments had not seen the order yet
    sent_at: dict[str, float] = field(default_factory=dict)  # order id -> wall time the placement was sent
    paid_ids: set[str] = field(default_factory=set)
    steps: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in PAY_STEPS})
    seconds: float = 0.0  # client side: first placement to last payment
    confirmed: int = 0
    e2e: list[float] = field(default_factory=list)
    rate: float = 0.0  # confirmed orders / (last confirmation − first placement)


class _StepError(Exception):
    pass


def _pay_order_body(rng: random.Random) -> dict[str, Any]:
    from oms.cli.demo import random_address, random_order

    body = random_order(rng, "web")
    city = body.pop("_city")
    body["shipping_address"] = random_address(rng, city)
    body["payment_method"] = "card"
    body["test"] = True  # benchmark orders are not real business
    return body


async def pay_level(
    base: str, key: str, sandbox: str, clients: int, orders: int, max_seconds: float, link_wait: float = 10.0
) -> PayLevelResult:
    """N clients, each: place a card order with its address, skip the note, create the payment link, pay it at
    the provider. Confirmations are collected afterwards from the listener (:func:`_collect_confirmations`)."""
    import httpx

    from services.payments.contracts.sandbox import CARD_SUCCESS

    result = PayLevelResult(clients)
    rng = random.Random(1000 + clients)
    bodies = [_pay_order_body(rng) for _ in range(orders)]
    remaining = iter(range(orders))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}", "User-Agent": "oms-bench"}

    async with (
        httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as api,
        httpx.AsyncClient(base_url=sandbox, headers={"User-Agent": "oms-bench"}, limits=limits, timeout=30) as psp,
    ):
        # Warm up the connections (not measured); any answer of the provider will do.
        await asyncio.gather(*(api.get("/api/v1/health") for _ in range(clients)))
        await asyncio.gather(*(psp.get("/v1/payments/warm_up") for _ in range(clients)))
        deadline = time.monotonic() + max_seconds

        async def step(name: str, request: Any, ok: int = 200) -> dict[str, Any]:
            t0 = time.perf_counter()
            try:
                response = await request
            except httpx.HTTPError as exc:
                raise _StepError(f"{name}: {exc!r}") from None
            result.steps[name].append(time.perf_counter() - t0)
            if response.status_code != ok:
                raise _StepError(f"{name}: {problem_text(response)}")
            data: dict[str, Any] = response.json()
            return data

        async def link(oid: str) -> dict[str, Any]:
            t0 = time.perf_counter()
            give_up = time.monotonic() + link_wait
            delay = 0.02
            while True:
                try:
                    response = await api.post(f"/api/v1/orders/{oid}/payments/link")
                except httpx.HTTPError as exc:
                    raise _StepError(f"link: {exc!r}") from None
                if response.status_code != 404 or time.monotonic() > give_up:
                    break
                result.link_retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)
            result.steps["link"].append(time.perf_counter() - t0)
            if response.status_code != 200:
                raise _StepError(f"link: {problem_text(response)}")
            data: dict[str, Any] = response.json()
            return data

        async def one(i: int) -> None:
            sent = time.time()
            order = await step("place", api.post("/api/v1/orders", json=bodies[i]), ok=201)
            oid = str(order["id"])
            result.sent_at[oid] = sent
            await step("note", api.put(f"/api/v1/orders/{oid}/customer-note", json={"skip": True}))
            made = await link(oid)
            paid = await step("pay", psp.post(
                f"/v1/payment_links/{made['link_id']}/pay", json={"card_number": CARD_SUCCESS},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            ))
            if paid.get("status") != "succeeded":
                raise _StepError(f"pay: provider says {paid.get('status')}")
            result.paid += 1
            result.paid_ids.add(oid)

        async def worker() -> None:
            for i in remaining:
                if time.monotonic() > deadline:
                    return
                result.started += 1
                try:
                    await one(i)
                except _StepError as exc:
                    result.errors += 1
                    result.first_error = result.first_error or str(exc)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        result.seconds = time.perf_counter() - start
    for values in result.steps.values():
        values.sort()
    return result


def _collect_confirmations(listener: EventListener, result: PayLevelResult, wait: float) -> None:
    """Wait (at most ``wait`` seconds) for every paid order's confirmation, then compute the figures."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and len(listener.received_for(result.paid_ids, CONFIRMED)) < len(
        result.paid_ids
    ):
        time.sleep(0.05)
    got = listener.received_for(result.sent_at, CONFIRMED)
    result.confirmed = len(got)
    result.e2e = sorted(received - result.sent_at[oid] for oid, (received, _lag) in got.items())
    if got:
        span = max(received for received, _ in got.values()) - min(result.sent_at.values())
        result.rate = len(got) / span if span > 0 else 0.0


def _ms(values: list[float], pct: float) -> str:
    return f"{percentile(values, pct) * 1000:.0f}" if values else "-"


@app.command()
def pay(
    clients: ClientsOption = "1,8,32",
    orders: Annotated[
        int, typer.Option("--orders", "-n", min=1, max=100_000, help="Orders per client count.")
    ] = 200,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    sandbox_url: SandboxUrlOption = None,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", min=1, help="Stop starting orders at a client count after this long.")
    ] = 60.0,
    event_wait: Annotated[
        float, typer.Option("--event-wait", min=0, help="How long to wait for the last confirmations after paying.")
    ] = 20.0,
) -> None:
    """Placed → paid → confirmed: card orders paid at the sandbox provider until their confirmation event."""
    counts = _parse_clients(clients)
    settings = common_settings()
    key = resolve_api_key(settings, api_key)
    base = base_url(settings, url)
    sandbox = (sandbox_url or settings.sandbox_provider_url).rstrip("/")
    check_reachable(base)
    check_provider(sandbox)

    print_machine()
    console.print(f"[bold]target[/]: {base}, provider {sandbox}  ({orders} orders per level, levels {counts})")

    listener = EventListener(settings.amqp_url, ("order.stage_changed.v1",))
    if not listener.start_and_wait(10):
        err_console.print(f"[red]cannot subscribe to oms.events: {listener.error!r}[/]")
        raise typer.Exit(1)

    results: list[PayLevelResult] = []
    try:
        for c in counts:
            console.print(f"paying {orders} card orders with {c} client(s)…")
            result = asyncio.run(pay_level(base, key, sandbox, c, orders, max_seconds))
            _collect_confirmations(listener, result, event_wait)
            results.append(result)
            if result.confirmed == 0:
                err_console.print(f"[red]no order was confirmed: {result.first_error or 'no confirmation event'}[/]")
                break
    except KeyboardInterrupt:
        err_console.print("interrupted.")
    finally:
        listener.stop()
        listener.join(5)

    table = Table(
        "clients", "confirmed", "errors", "confirmed/s", "e2e p50 ms", "e2e p99 ms",
        *(f"{s} p50 ms" for s in PAY_STEPS), title="oms bench pay (placed → paid → confirmed)",
    )
    for r in results:
        table.add_row(
            str(r.clients),
            f"{r.confirmed}/{r.started}",
            str(r.errors),
            f"{r.rate:.1f}" if r.rate else "-",
            _ms(r.e2e, 50),
            _ms(r.e2e, 99),
            *(_ms(r.steps[s], 50) for s in PAY_STEPS),
        )
    console.print(table)
    console.print(
        "e2e = confirmation event received − placement request sent; confirmed/s = confirmed orders / "
        "(last confirmation − first placement); steps: place = POST /orders, note = PUT …/customer-note, "
        "link = POST …/payments/link (incl. retries while payments has not seen the order), pay = the provider."
    )
    for r in results:
        if r.link_retries:
            console.print(f"{r.clients} client(s): {r.link_retries} link request(s) retried (order not yet known "
                          "to payments)")
        if r.first_error:
            err_console.print(f"[yellow]{r.clients} client(s): first error: {r.first_error}[/]")
        missing = len(r.paid_ids) - len(listener.received_for(r.paid_ids, CONFIRMED))
        if missing:
            err_console.print(f"[yellow]{r.clients} client(s): {missing} paid order(s) not confirmed in time[/]")
    if not results or any(r.confirmed == 0 for r in results):
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------------ abandoning
ABANDONED = "order.stage_changed.v1:abandoned"


class AbandonListener(EventListener):
    """``order.stage_changed.v1`` to ``abandoned``: per order, when its batch began (the event data's ``at``) and
    when the event was written (the CloudEvent's ``time``), both set by the timer's transaction."""

    def __init__(self, amqp_url: str) -> None:
        super().__init__(amqp_url, ("order.stage_changed.v1",))
        self.abandoned: dict[str, tuple[float, float]] = {}

    def _on_message(self, ch: Any, method: Any, properties: Any, body: bytes) -> None:
        try:
            event = json.loads(body)
            if event_kind(event) != ABANDONED:
                return
            written = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
            began = datetime.fromisoformat(str(event["data"]["at"]).replace("Z", "+00:00")).timestamp()
            subject = str(event["subject"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        with self._lock:
            self.abandoned.setdefault(subject, (began, written))

    def abandoned_of(self, subjects: Iterable[str]) -> dict[str, tuple[float, float]]:
        with self._lock:
            return {s: self.abandoned[s] for s in subjects if s in self.abandoned}


@dataclass
class Check:
    """One timer check, as its events show it: batches (start → count, last write) back to back."""

    batches: dict[float, tuple[int, float]] = field(default_factory=dict)

    @property
    def orders(self) -> int:
        return sum(n for n, _ in self.batches.values())

    @property
    def seconds(self) -> float:
        return max(w for _, w in self.batches.values()) - min(self.batches)

    @property
    def largest_batch(self) -> int:
        return max(n for n, _ in self.batches.values())


def timer_checks(abandoned: Iterable[tuple[float, float]], gap: float = 0.5) -> list[Check]:
    """Group ``(batch start, written)`` per order into batches (same start) and batches into checks: a batch
    that starts more than ``gap`` seconds after the previous one's last write begins a new check."""
    batches: dict[float, tuple[int, float]] = {}
    for began, written in abandoned:
        n, last = batches.get(began, (0, written))
        batches[began] = (n + 1, max(last, written))
    checks: list[Check] = []
    last_written: float | None = None
    for began in sorted(batches):
        if last_written is None or began - last_written > gap:
            checks.append(Check())
        checks[-1].batches[began] = batches[began]
        last_written = max(last_written or 0.0, batches[began][1])
    return checks


def _stale_order_body(rng: random.Random) -> dict[str, Any]:
    from oms.cli.demo import random_order

    body = random_order(rng, "web")  # no address, no payment method: what the timer abandons
    body.pop("_city")
    body["test"] = True  # benchmark orders are not real business
    return body


@app.command()
def abandon(
    orders: Annotated[
        int, typer.Option("--orders", "-n", min=1, max=100_000, help="Stale orders to place and have abandoned.")
    ] = 5000,
    clients: Annotated[int, typer.Option("--clients", min=1, max=512, help="Concurrent placing clients.")] = 32,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", min=1, help="Stop placing after this long.")
    ] = 120.0,
    wait: Annotated[
        float, typer.Option("--wait", min=1, help="How long to wait for the abandonments after placing.")
    ] = 300.0,
) -> None:
    """Abandoned orders/s of the abandonment timer, on a backlog of orders placed over HTTP without an address.

    Start the system with a short abandonment window first, e.g. ``OMS_ABANDON_AFTER_SECONDS=20 oms run``
    (keep the default 30 s check interval, so the orders pile up between checks).
    """
    settings = common_settings()
    key = resolve_api_key(settings, api_key)
    base = base_url(settings, url)
    check_reachable(base)

    print_machine()
    console.print(f"[bold]target[/]: {base}  ({orders} orders without address, {clients} clients)")
    listener = AbandonListener(settings.amqp_url)
    if not listener.start_and_wait(10):
        err_console.print(f"[red]cannot subscribe to oms.events: {listener.error!r}[/]")
        raise typer.Exit(1)
    try:
        console.print(f"placing {orders} orders without an address…")
        placed = asyncio.run(place_level(base, key, clients, orders, max_seconds, _stale_order_body))
        if placed.placed == 0:
            err_console.print(f"[red]no order was placed: {placed.first_error}[/]")
            raise typer.Exit(1)
        console.print(
            f"placed {placed.placed} in {placed.seconds:.1f}s ({placed.placed / placed.seconds:.0f}/s); "
            "waiting for the timer to abandon them…"
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and len(listener.abandoned_of(placed.order_ids)) < placed.placed:
            time.sleep(0.5)
        got = listener.abandoned_of(placed.order_ids)
    except KeyboardInterrupt:
        err_console.print("interrupted.")
        raise typer.Exit(1) from None
    finally:
        listener.stop()
        listener.join(5)

    if not got:
        err_console.print(
            f"[red]no order was abandoned within {wait:.0f}s: is the system started with a short "
            "OMS_ABANDON_AFTER_SECONDS (e.g. `OMS_ABANDON_AFTER_SECONDS=20 oms run`)?[/]"
        )
        raise typer.Exit(1)
    checks = timer_checks(got.values())
    table = Table(
        "check", "orders", "batches", "largest batch", "seconds", "abandoned orders/s", title="oms bench abandon"
    )
    for i, c in enumerate(checks, 1):
        rate = f"{c.orders / c.seconds:.0f}" if c.seconds > 0 else "-"
        table.add_row(str(i), str(c.orders), str(len(c.batches)), str(c.largest_batch), f"{c.seconds:.2f}", rate)
    console.print(table)
    biggest = max(checks, key=lambda c: c.orders)
    if biggest.seconds > 0:
        console.print(
            f"abandoned {len(got)}/{placed.placed}; largest check: {biggest.orders} orders in {biggest.seconds:.2f}s = "
            f"[bold]{biggest.orders / biggest.seconds:.0f} abandoned orders/s[/] at batch size {biggest.largest_batch}"
        )
    console.print(
        "seconds = a check's last event written − its first batch's start (both from the events); a check is "
        "batches less than 0.5 s apart."
    )
    if len(got) < placed.placed:
        err_console.print(f"[yellow]{placed.placed - len(got)} order(s) not abandoned within {wait:.0f}s[/]")
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------------ relay
@app.command()
def relay(
    events: Annotated[
        int, typer.Option("--events", "-n", min=1, max=1_000_000, help="Events to write and relay.")
    ] = 50_000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000, help="The relay's batch.")] = 500,
    raw_messages: Annotated[
        int, typer.Option("--messages", min=100, help="Messages for RabbitMQ's own publish rate.")
    ] = 20_000,
    json_path: Annotated[str | None, typer.Option("--json", help="Also write the figures to this file.")] = None,
) -> None:
    """Outbox relay events/s and CPU per event on a backlog in a scratch schema, next to RabbitMQ's own
    persistent publish rate with batched confirms, measured in the same run (no running system needed)."""
    from oms.cli import bench_relay

    settings = common_settings()
    print_machine()
    r = bench_relay.measure(
        settings.database_url, settings.amqp_url, events, batch_size, raw_messages,
        progress=lambda text: console.print(text),
    )
    table = Table("what", "events", "seconds", "per second", "CPU µs per event", "÷ raw publish",
                  title="oms bench relay")
    table.add_row("outbox relay (backlog drained)", str(r.events), f"{r.seconds:.2f}", f"{r.rate:,.0f}",
                  f"{r.cpu_us_per_event:.0f}", f"{r.ratio:.0%}" if r.ratio is not None else "-")
    table.add_row("rabbitmq persistent publish, batched confirms", str(raw_messages), "-",
                  f"{r.raw_publish_per_s:,.0f}" if not r.raw_error else f"error: {r.raw_error}", "-", "-")
    console.print(table)
    if r.routed != r.events:
        err_console.print(f"[yellow]{r.routed} of {r.events} events reached the scratch queue[/]")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(r.as_dict(), f, indent=2)
