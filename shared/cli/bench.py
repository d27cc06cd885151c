"""``oms bench place``: how fast can orders be placed over HTTP, and how soon are their events on the bus?

For each client count, N concurrent workers each place orders one after another (``POST /api/v1/orders``)
until the level's order count is reached; orders/s = orders placed / wall time, latency percentiles are
per request. Meanwhile a subscriber bound to ``order.placed.v1`` on ``oms.events`` records when each
order's event arrives: commit→published lag = receive time − the CloudEvent's ``time`` (set in the
placing transaction), relay events/s = events received / time between the first and the last receipt.

Bounded on purpose: at most ``--orders`` per level and ``--max-seconds`` per level.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Benchmarks against a running system (local only).", no_args_is_help=True)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(-(-pct * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def machine_facts() -> dict[str, str]:
    facts = {"python": platform.python_version(), "os": f"{platform.system()} {platform.release()}"}
    try:
        facts["nproc"] = str(len(os.sched_getaffinity(0)))
    except AttributeError:
        facts["nproc"] = str(os.cpu_count())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    facts["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    facts.setdefault("cpu", platform.processor() or "unknown")
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    facts["memory"] = f"{kib / 1024 / 1024:.1f} GiB"
                    break
    except (OSError, ValueError):
        pass
    return facts


# ------------------------------------------------------------------------------------------------ event listener
class PlacedListener(threading.Thread):
    """Receives ``order.placed.v1`` in a thread of its own (pika's BlockingConnection is single-threaded)."""

    def __init__(self, amqp_url: str) -> None:
        super().__init__(name="bench-listener", daemon=True)
        self.amqp_url = amqp_url
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        # subject (order id) -> (receive time, lag seconds)
        self.received: dict[str, tuple[float, float]] = {}

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
            channel.queue_bind(queue, "oms.events", routing_key="order.placed.v1")
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
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.received.setdefault(subject, (now, now - sent))

    def snapshot(self, subjects: set[str]) -> list[tuple[float, float]]:
        with self._lock:
            return [self.received[s] for s in subjects if s in self.received]

    def stop(self) -> None:
        self._stopping.set()


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
    from shared.cli.demo import random_address, random_order

    body = random_order(rng, "web")
    city = body.pop("_city")
    body["shipping_address"] = random_address(rng, city)
    body["payment_method"] = "cash_on_delivery"
    body["test"] = True  # benchmark orders are not real business
    return body


async def place_level(base: str, key: str, clients: int, orders: int, max_seconds: float) -> LevelResult:
    import httpx

    from shared.cli.demo import problem_text

    result = LevelResult(clients)
    rng = random.Random(clients)
    bodies = [_order_body(rng) for _ in range(orders)]
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
    clients: Annotated[str, typer.Option("--clients", help="Client counts to measure, comma-separated.")] = "1,8,32",
    orders: Annotated[
        int, typer.Option("--orders", "-n", min=1, max=100_000, help="Orders per client count.")
    ] = 300,
    url: Annotated[str | None, typer.Option("--url", help="API base URL (default: from OMS_HTTP_PORT).")] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="OMS_API_KEY", help="API key (default: the developer key).")
    ] = None,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", min=1, help="Stop placing at a client count after this long.")
    ] = 60.0,
    event_wait: Annotated[
        float, typer.Option("--event-wait", min=0, help="How long to wait for the last events after placing.")
    ] = 15.0,
) -> None:
    """Orders/s and latency of placing orders over HTTP, and the commit→published lag of their events."""
    from shared.cli.demo import base_url, resolve_api_key
    from shared.config import get_settings

    counts = _parse_clients(clients)
    settings = get_settings()
    key = resolve_api_key(settings, api_key)
    base = base_url(settings, url)

    facts = machine_facts()
    console.print(
        f"[bold]machine[/]: {facts.get('cpu')} · nproc {facts.get('nproc')} · memory {facts.get('memory', '?')} · "
        f"Python {facts['python']} · {facts['os']}"
    )
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
