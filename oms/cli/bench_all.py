"""``oms bench`` (or ``oms bench all``): every figure of the system in one run, each next to the machine's limit.

Against a system started the usual way (``OMS_METRICS_PORT=9100 oms run``, optionally ``-p orders=2``), it
prints in one go, with a progress display while it runs:

1. this machine's raw limits, measured on the spot (``oms.cli.bench_raw``): Postgres two-insert transactions
   at 1 and 16 clients, RabbitMQ persistent publishing with batched confirms and consume + ack, a bare uvicorn
   JSON endpoint at each placement client count;
2. placement over HTTP: orders/s and p50/p99 at each client count (``wrk`` if installed, else Python);
3. card orders placed → paid → confirmed per second and p50/p99 (``oms bench pay``'s flow);
4. commit → published lag per service and published → handled lag per consuming queue, p50/p99, from the
   services' Prometheus histograms (bucket deltas over each part);
5. CPU ms per order per process (``/proc``) and peak RSS per process, Postgres and RabbitMQ included, both in
   the part's window and until fully handled, with the sums split into services, infrastructure and sandboxes;
6. every throughput as a ratio to the matching raw limit, and the issue's targets, met or not.

Fully handled: consumers lag behind placement, so part of the work an order causes is done after the window in
which it was placed, and the window's figure hides it (it would be charged to the next part, or to nothing).
After each placement level and each card-order level, before the next starts, the benchmark waits until the
system is idle (``bench_probe.Drainer``: queues, outboxes, counters, CPU), at most ``--drain-timeout`` seconds;
"CPU per order fully handled" is the CPU of the window and that wait, divided by the level's orders. Each level
is then a part of its own (``placement@8``). ``--no-drain`` measures as before: one window per part over all
its levels, nothing waited for.

The processes come from ``oms run``'s run file (``OMS_STATE_DIR/processes.json``), so new services and extra
processes join the report without a change here. ``--json FILE`` writes every figure.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from oms.cli import bench_load, bench_probe, bench_raw, runfile
from oms.cli.common import (
    ApiKeyOption,
    SandboxUrlOption,
    UrlOption,
    base_url,
    check_provider,
    check_reachable,
    machine_facts,
    percentile,
    resolve_api_key,
)
from oms.cli.common import settings as common_settings
from shared import registry

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

PARTS = ("raw", "place", "pay")
TARGETS = {
    "placement_per_s_at_32": 1000.0,
    "placement_p99_ms_at_32": 100.0,
    "card_orders_per_s": 200.0,
    "cpu_ms_per_card_order": 10.0,
    "peak_rss_mib_per_service": 150.0,
}


@dataclass
class PartProbe:
    """CPU and metrics of the system's processes over one part (a placement or card-order level; with
    ``--no-drain``, all levels of placement or of card orders)."""

    orders: int = 0
    seconds: float = 0.0
    """The window: the part's load, from its first request to its last answer."""
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    """Per process, CPU in the window ÷ orders."""
    clients: int | None = None
    cpu_ms_per_order_handled: dict[str, float] = field(default_factory=dict)
    """Per process, CPU in the window and the drain after it ÷ orders: the cost of an order fully handled."""
    drain_seconds: float | None = None
    """None: not drained (``--no-drain``)."""
    drain_timed_out: bool = False
    drain_remaining: int = 0
    """Messages queued and events unpublished when the drain timed out."""
    cpu_split: dict[str, dict[str, float]] = field(default_factory=dict)
    """``window`` / ``handled`` -> services, infrastructure, sandboxes, all processes (CPU ms per order)."""
    commit_to_published: dict[str, dict[str, float | None]] = field(default_factory=dict)
    published_to_handled: dict[str, dict[str, float | None]] = field(default_factory=dict)
    published_per_s: dict[str, float] = field(default_factory=dict)
    handled_per_s: dict[str, float] = field(default_factory=dict)


@dataclass
class Report:
    machine: dict[str, str]
    date: str
    command: str
    load_client: str
    processes: list[dict[str, Any]]
    drain_timeout: float | None = None
    """None: ``--no-drain``."""
    groups: dict[str, str] = field(default_factory=dict)
    """Process -> services, infrastructure, sandboxes or bench client."""
    raw: dict[str, Any] = field(default_factory=dict)
    bare_http: list[dict[str, Any]] = field(default_factory=list)
    placement: list[dict[str, Any]] = field(default_factory=list)
    card_orders: list[dict[str, Any]] = field(default_factory=list)
    probes: dict[str, PartProbe] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ probing a part
class Probe:
    """Snapshots before a part; the figures per order after it."""

    def __init__(self, watched: list[bench_probe.Watched]) -> None:
        self.watched = watched
        self.cpu = bench_probe.cpu_snapshot(watched)
        self.metrics = bench_probe.scrape(watched)
        self.start = time.monotonic()

    def per_order(self, cpu: dict[str, float], orders: int) -> dict[str, float]:
        return {name: (cpu[name] - self.cpu.get(name, 0.0)) * 1000 / orders for name in cpu} if orders else {}

    def finish(self, orders: int, clients: int | None = None) -> PartProbe:
        seconds = time.monotonic() - self.start
        cpu = bench_probe.cpu_snapshot(self.watched)
        metrics = bench_probe.scrape(self.watched)
        part = PartProbe(orders=orders, seconds=seconds, clients=clients)
        part.cpu_ms_per_order = self.per_order(cpu, orders)
        for service, after in metrics.by_service.items():
            changes = bench_probe.delta(self.metrics.by_service.get(service, {}), after)
            for (metric, label), buckets in changes.items():
                if metric in (bench_probe.OUTBOX_LAG, bench_probe.HANDLE_LAG):
                    figures = {
                        "events": bench_probe.histogram_count(buckets),
                        "p50_ms": _ms_or_none(bench_probe.histogram_quantile(0.5, buckets)),
                        "p99_ms": _ms_or_none(bench_probe.histogram_quantile(0.99, buckets)),
                    }
                    target = part.commit_to_published if metric == bench_probe.OUTBOX_LAG else part.published_to_handled
                    target[label or service] = figures
                elif metric == bench_probe.PUBLISHED:
                    part.published_per_s[label or service] = buckets.get(0.0, 0.0) / seconds
                elif metric == f"{bench_probe.HANDLED}:ok":
                    part.handled_per_s[label] = buckets.get(0.0, 0.0) / seconds
        return part

    def drained(self, part: PartProbe, drain: bench_probe.DrainResult) -> None:
        """The figures until fully handled: from this probe's start to the end of the drain after the window."""
        part.cpu_ms_per_order_handled = self.per_order(drain.cpu, part.orders)
        part.drain_seconds = drain.seconds
        part.drain_timed_out = drain.timed_out
        part.drain_remaining = drain.remaining


def split(part: PartProbe, groups: dict[str, str]) -> None:
    """The window's and the fully handled sums, per group of processes."""
    part.cpu_split = {"window": bench_probe.split_sums(part.cpu_ms_per_order, groups)}
    if part.cpu_ms_per_order_handled:
        part.cpu_split["handled"] = bench_probe.split_sums(part.cpu_ms_per_order_handled, groups)


class Settler:
    """Waits after a part until the system is idle (``bench_probe.Drainer``), showing what is left."""

    def __init__(self, drainer: bench_probe.Drainer, watched: list[bench_probe.Watched], timeout: float) -> None:
        self.drainer = drainer
        self.watched = watched
        self.timeout = timeout
        # Quiet is asked of the system: its processes and its database's backends. Not of RabbitMQ (shared with
        # other vhosts; what it still has to deliver for the system shows in the queue depths) nor of this command.
        self.quiet = [w.name for w in watched if w.name not in ("rabbitmq", bench_probe.BENCH_CLIENT)]

    def wait(self, what: str, step: Any) -> bench_probe.DrainResult:
        return self.drainer.wait(self.watched, self.quiet, self.timeout, lambda text: step(f"{what}: draining: {text}"))


def _ms_or_none(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# ------------------------------------------------------------------------------------------------ the command
def _levels(value: str) -> list[int]:
    from oms.cli.bench import _parse_clients

    return _parse_clients(value)


def bench_everything(
    ctx: typer.Context,
    clients: Annotated[
        str, typer.Option("--clients", help="Placement (and bare HTTP) client counts, comma-separated.")
    ] = "1,8,32,128",
    seconds: Annotated[
        float, typer.Option("--seconds", min=1, help="Seconds per placement / bare HTTP client count.")
    ] = 10.0,
    pay_clients: Annotated[
        str, typer.Option("--pay-clients", help="Card order (placed → paid → confirmed) client counts.")
    ] = "1,32",
    pay_orders: Annotated[
        int, typer.Option("--pay-orders", min=1, max=100_000, help="Card orders per client count.")
    ] = 300,
    raw_seconds: Annotated[
        float, typer.Option("--raw-seconds", min=1, help="Seconds per Postgres client count.")
    ] = 5.0,
    messages: Annotated[
        int, typer.Option("--messages", min=100, help="RabbitMQ messages published, then consumed.")
    ] = 20_000,
    load_client: Annotated[
        str, typer.Option("--load-client", help="auto (wrk if installed), wrk or python.")
    ] = "auto",
    only: Annotated[
        str, typer.Option("--only", help=f"Parts to run, comma-separated, of: {', '.join(PARTS)}.")
    ] = ",".join(PARTS),
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write every figure to this file (JSON).")
    ] = None,
    drain: Annotated[
        bool, typer.Option("--drain/--no-drain", help="After each level, wait until every queue and outbox is "
                           "empty and the system is quiet, and report CPU per order fully handled (--no-drain: "
                           "the window only, quicker).")
    ] = True,
    drain_timeout: Annotated[
        float, typer.Option("--drain-timeout", min=1, help="Longest wait for the system to go idle, seconds.")
    ] = 300.0,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    sandbox_url: SandboxUrlOption = None,
) -> None:
    """Everything, in one run: raw limits, placement, card orders, lags, CPU and memory per process, ratios."""
    if ctx.invoked_subcommand is not None:
        return  # `oms bench place` etc.: this is only the group's callback
    parts = [p.strip() for p in only.split(",") if p.strip()]
    if unknown := [p for p in parts if p not in PARTS]:
        raise typer.BadParameter(f"unknown part(s) {unknown}; known: {', '.join(PARTS)}", param_hint="--only")
    if load_client not in ("auto", "wrk", "python"):
        raise typer.BadParameter("auto, wrk or python", param_hint="--load-client")
    levels = _levels(clients)
    pay_levels = _levels(pay_clients)
    use_wrk = load_client == "wrk" or (load_client == "auto" and bench_load.wrk_path() is not None)
    if use_wrk and not bench_load.wrk_path():
        raise typer.BadParameter("wrk is not installed (apt-get install wrk)", param_hint="--load-client")

    settings = common_settings()
    base = base_url(settings, url)
    key = resolve_api_key(settings, api_key) if {"place", "pay"} & set(parts) else ""
    sandbox = (sandbox_url or settings.sandbox_provider_url).rstrip("/")
    if {"place", "pay"} & set(parts):
        check_reachable(base)
    if "pay" in parts:
        check_provider(sandbox)

    run_processes = runfile.read(settings.state_dir)
    from urllib.parse import urlsplit

    database = urlsplit(settings.database_url).path.lstrip("/") or None
    watched = bench_probe.watched(run_processes, database=database)
    report = Report(
        machine=machine_facts(),
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        command=" ".join(["oms", *sys.argv[1:]]) if sys.argv else "oms bench",
        load_client="wrk" if use_wrk else "python (httpx)",
        processes=run_processes,
        drain_timeout=drain_timeout if drain else None,
    )
    _database_facts(report, settings.database_url)
    sandboxes = {p.name for p in registry.processes() if p.development_only}
    report.groups = {w.name: bench_probe.group_of(w, sandboxes) for w in watched}
    _explain_setup(report, run_processes, settings)
    drainer = None
    if drain and {"place", "pay"} & set(parts):
        delays = [int(d) for d in settings.retry_delays.split(",")]
        drainer = bench_probe.Drainer(
            settings.amqp_url, settings.database_url, bench_probe.consumed_queues(delays), bench_probe.outbox_schemas(),
        ).open()
        # The drainer's own queries are not the system's work.
        watched = [replace(w, exclude=(drainer.own_backend,)) if w.name == "postgres" and drainer.own_backend
                   else w for w in watched]
    settler = Settler(drainer, watched, drain_timeout) if drainer else None

    steps = (
        (3 + len(levels) if "raw" in parts else 0)
        + (len(levels) if "place" in parts else 0)
        + (len(pay_levels) if "pay" in parts else 0)
    )
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console,
    )
    try:
        with progress:
            task = progress.add_task("starting", total=steps)

            def step(text: str) -> None:
                progress.update(task, description=text)

            def done() -> None:
                progress.advance(task)

            if "raw" in parts:
                _raw_part(report, settings, levels, seconds, raw_seconds, messages, use_wrk, step, done)
            if "place" in parts or "pay" in parts:
                step("stock: every catalog SKU, so fulfillment reserves each order's units")
                _stock_catalog(report, base, key)
                if settler:  # what was left from before (earlier runs, the stock events) is no part's work
                    _settle_before(report, settler, step)
            if "place" in parts:
                _place_part(report, watched, base, key, levels, seconds, use_wrk, step, done, settler)
            if "pay" in parts:
                _pay_part(report, watched, base, key, sandbox, settings.amqp_url, pay_levels, pay_orders, step,
                          done, settler)
            step("done")
    except KeyboardInterrupt:
        err_console.print("interrupted; the figures so far:")
    finally:
        if drainer:
            drainer.close()
    for part in report.probes.values():
        split(part, report.groups)
    report.peak_rss_mib = bench_probe.peak_rss(watched)
    _ratios_and_targets(report)
    print_report(report)
    if json_file is not None:
        json_file.write_text(json.dumps(asdict(report), indent=2, default=str))
        console.print(f"figures written to {json_file}")


def _explain_setup(report: Report, run_processes: list[dict[str, Any]], settings: Any) -> None:
    where = runfile.run_file(settings.state_dir)
    report.notes.append(
        "postgres = the backends connected to the system's database (its WAL writer and checkpointer are not "
        "counted); rabbitmq = the whole broker; bench client = this command (not counted in sums). Other work on "
        "this machine (tests, other databases) slows every figure: compare ratios measured in one run."
    )
    report.notes.append(
        "CPU sums: services = the OMS processes; infrastructure = Postgres and RabbitMQ; sandboxes = the stand-ins "
        "for third parties (mail catcher, messaging, carrier, payment provider) that production would not run; "
        "all processes = the three together."
    )
    if report.drain_timeout is not None:
        report.notes.append(
            "fully handled = the level's window and the wait after it until every consumed queue and retry queue "
            "is empty, no outbox has an unpublished row, no event is handled or published any more and the "
            "system's processes use under 1 % of a core each for 2 s (RabbitMQ, shared, is not asked to be quiet); "
            "CPU until the start of that quiet stretch, divided by the level's orders (it includes the processes' "
            "idle polling while the last work finished)."
        )
    if not run_processes:
        report.notes.append(
            f"no run file at {where}: CPU, memory and lags of the services are not measured. Start the system "
            "with `OMS_METRICS_PORT=9100 oms run` (same OMS_STATE_DIR) to get them."
        )
    elif not any(p.get("metrics_port") for p in run_processes):
        report.notes.append(
            "the services run without metrics ports: lags are n/a. Start with `OMS_METRICS_PORT=9100 oms run`."
        )


def _raw_part(
    report: Report, settings: Any, levels: list[int], seconds: float, raw_seconds: float, messages: int,
    use_wrk: bool, step: Any, done: Any,
) -> None:
    for n in (1, 16):
        step(f"raw: Postgres two-insert transactions, {n} client(s)")
        report.raw[f"postgres_{n}"] = asdict(bench_raw.postgres_two_insert(settings.database_url, n, raw_seconds))
        report.raw[f"postgres_{n}"]["rate"] = _rate(report.raw[f"postgres_{n}"])
        done()
    step(f"raw: RabbitMQ, {messages} persistent messages published (confirms per 500), consumed + acked")
    rabbit = bench_raw.rabbitmq(settings.amqp_url, messages)
    report.raw["rabbitmq_publish"] = {**asdict(rabbit.publish), "rate": rabbit.publish.rate, "batch": rabbit.batch}
    report.raw["rabbitmq_consume"] = {**asdict(rabbit.consume), "rate": rabbit.consume.rate}
    done()
    from oms.cli.bench import _order_body

    body = json.dumps(_order_body(random.Random(0)))
    with bench_raw.BareHttp() as bare:
        for c in levels:
            step(f"raw: bare HTTP JSON endpoint, {c} client(s), {seconds:g} s")
            result = bench_load.run_level(bare.url, c, seconds, body, {}, use_wrk=use_wrk)
            report.bare_http.append(_load_dict(result))
            done()


def _rate(figures: dict[str, Any]) -> float:
    return figures["operations"] / figures["seconds"] if figures.get("seconds") else 0.0


def _load_dict(result: bench_load.LoadResult) -> dict[str, Any]:
    out = {k: v for k, v in asdict(result).items() if k != "latencies"}
    out["rate"] = result.rate
    return out


def _stock_catalog(report: Report, base: str, key: str) -> None:
    """Give every SKU the load generator orders a large stock level: fulfillment then reserves every order's
    units at placement (a conditional update and a movement per line), as in a real shop, instead of skipping
    untracked SKUs."""
    import httpx

    from oms.cli.demo import CATALOG

    body = {"on_hand": 100_000_000, "reason": "oms bench: stock for the load"}
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as api:
            for sku, _name, _price in CATALOG:
                api.put(f"/api/v1/stock/{sku}", json=body).raise_for_status()
    except httpx.HTTPError as exc:
        report.notes.append(f"stock not set (is fulfillment running?): {exc!r}; its SKUs are not tracked")


def _settle_before(report: Report, settler: Settler, step: Any) -> None:
    result = settler.wait("before measuring", step)
    if result.timed_out:
        report.notes.append(
            f"the system was not idle before the first part after {result.seconds:.0f} s ({result.status}): the "
            "first part's figures carry that older work too."
        )


def _drain_after(report: Report, name: str, probe: Probe, part: PartProbe, settler: Settler, step: Any) -> None:
    result = settler.wait(name, step)
    probe.drained(part, result)
    if result.timed_out:
        report.notes.append(
            f"{name}: the system was not idle after --drain-timeout {settler.timeout:g} s ({result.status}): its "
            "'fully handled' figures are lower bounds, and the rest of its work is charged to the next part."
        )


def _place_part(
    report: Report, watched: list[bench_probe.Watched], base: str, key: str, levels: list[int], seconds: float,
    use_wrk: bool, step: Any, done: Any, settler: Settler | None = None,
) -> None:
    from oms.cli.bench import _order_body

    body = json.dumps(_order_body(random.Random(0)))
    headers = {"Authorization": f"Bearer {key}"}
    probe = Probe(watched)
    placed = 0
    for c in levels:
        if settler:
            probe = Probe(watched)
        step(f"placement: {c} client(s), {seconds:g} s")
        result = bench_load.run_level(f"{base}/api/v1/orders", c, seconds, body, headers, use_wrk=use_wrk)
        report.placement.append(_load_dict(result))
        placed += result.ok
        if settler:
            name = f"placement@{c}"
            part = report.probes[name] = probe.finish(result.ok, c)
            _drain_after(report, name, probe, part, settler, step)
        else:
            time.sleep(1)  # let the events of this level drain before the next
        done()
    if not settler:
        time.sleep(2)
        report.probes["placement"] = probe.finish(placed)


def _pay_part(
    report: Report, watched: list[bench_probe.Watched], base: str, key: str, sandbox: str, amqp_url: str,
    levels: list[int], orders: int, step: Any, done: Any, settler: Settler | None = None,
) -> None:
    import asyncio

    from oms.cli.bench import EventListener, _collect_confirmations, pay_level

    listener = EventListener(amqp_url, ("order.stage_changed.v1",))
    if not listener.start_and_wait(10):
        report.notes.append(f"card orders not measured: cannot subscribe to oms.events ({listener.error!r})")
        return
    probe = Probe(watched)
    confirmed = 0
    try:
        for c in levels:
            if settler:
                probe = Probe(watched)
            step(f"card orders: {orders} placed → paid → confirmed, {c} client(s)")
            result = asyncio.run(pay_level(base, key, sandbox, c, orders, max_seconds=120))
            _collect_confirmations(listener, result, 30)
            confirmed += result.confirmed
            if settler:
                name = f"card_orders@{c}"
                part = report.probes[name] = probe.finish(result.confirmed, c)
                _drain_after(report, name, probe, part, settler, step)
            report.card_orders.append({
                "clients": c, "started": result.started, "confirmed": result.confirmed, "errors": result.errors,
                "rate": result.rate,
                "p50_ms": percentile(result.e2e, 50) * 1000 if result.e2e else None,
                "p99_ms": percentile(result.e2e, 99) * 1000 if result.e2e else None,
                "first_error": result.first_error,
            })
            done()
    finally:
        listener.stop()
        listener.join(5)
    if not settler:
        report.probes["card_orders"] = probe.finish(confirmed)


# ------------------------------------------------------------------------------------------------ ratios
def _best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(rows, key=lambda r: r.get("rate") or 0.0, default=None)


def _ratios_and_targets(report: Report) -> None:
    ratios = report.ratios
    bare = {r["clients"]: r for r in report.bare_http}
    pg16 = (report.raw.get("postgres_16") or {}).get("rate") or 0.0
    pg1 = (report.raw.get("postgres_1") or {}).get("rate") or 0.0

    def add(what: str, value: float | None, limit_name: str, limit: float | None) -> None:
        ratios.append({
            "figure": what, "value": value, "limit": limit_name, "limit_value": limit,
            "ratio": (value / limit) if value is not None and limit else None,
        })

    for row in report.placement:
        c = row["clients"]
        add(f"placement orders/s, {c} client(s)", row["rate"], f"bare HTTP req/s, {c} client(s)",
            (bare.get(c) or {}).get("rate"))
    if report.placement and report.placement[0]["clients"] == 1:
        add("placement orders/s, 1 client", report.placement[0]["rate"], "Postgres two-insert tx/s, 1 client", pg1)
    best_place = _best(report.placement)
    if best_place:
        add(f"placement orders/s (best: {best_place['clients']} clients)", best_place["rate"],
            "Postgres two-insert tx/s, 16 clients", pg16)
    best_card = _best(report.card_orders)
    if best_card:
        add(f"card orders/s (best: {best_card['clients']} clients)", best_card["rate"],
            "Postgres two-insert tx/s, 16 clients", pg16)
    publish = (report.raw.get("rabbitmq_publish") or {}).get("rate")
    consume = (report.raw.get("rabbitmq_consume") or {}).get("rate")
    for part, probe in report.probes.items():
        if probe.published_per_s:
            add(f"events published/s during {part} (all relays)", sum(probe.published_per_s.values()),
                "RabbitMQ persistent publish/s", publish)
        if probe.handled_per_s:
            add(f"events handled/s during {part} (all consumers)", sum(probe.handled_per_s.values()),
                "RabbitMQ consume + ack/s", consume)

    def target(what: str, value: float | None, goal: str, met: bool | None) -> None:
        report.targets.append({"target": what, "measured": value, "goal": goal, "met": met})

    at32 = next((r for r in report.placement if r["clients"] == 32), None)
    if at32:
        target("placement orders/s at 32 clients", at32["rate"], "≥ 1000",
               at32["rate"] >= TARGETS["placement_per_s_at_32"])
        target("placement p99 ms at 32 clients", at32["p99_ms"], "< 100",
               at32["p99_ms"] < TARGETS["placement_p99_ms_at_32"])
    if best_card:
        target("card orders/s (placed → paid → confirmed)", best_card["rate"], "≥ 200",
               best_card["rate"] >= TARGETS["card_orders_per_s"])
    card = card_cpu(report)
    if card is not None:
        total, handled = card
        how = "fully handled" if handled else "in the window only (--no-drain)"
        target(f"CPU ms per card order, all processes (services, Postgres, RabbitMQ, sandboxes; {how})", total,
               "≤ 10", total <= TARGETS["cpu_ms_per_card_order"])
    services = {p["name"]: p for p in report.processes}
    rss = {k: v for k, v in report.peak_rss_mib.items() if k in services}
    if rss:
        worst = max(rss, key=lambda k: rss[k])
        target(f"peak RSS MiB per service process (largest: {worst})", rss[worst], "< 150",
               rss[worst] < TARGETS["peak_rss_mib_per_service"])


def card_cpu(report: Report) -> tuple[float, bool] | None:
    """CPU ms per card order over all processes (not this command), and whether it is the fully handled figure:
    over every card-order level, each level's CPU weighted by its orders."""
    parts = [p for name, p in report.probes.items() if name.split("@")[0] == "card_orders" and p.orders]
    if not parts or not any(p.cpu_ms_per_order for p in parts):
        return None
    handled = all(p.cpu_ms_per_order_handled for p in parts)
    orders = sum(p.orders for p in parts)
    cpu = sum(
        p.orders * bench_probe.split_sums(p.cpu_ms_per_order_handled if handled else p.cpu_ms_per_order,
                                          report.groups)[bench_probe.ALL]
        for p in parts
    )
    return cpu / orders, handled


# ------------------------------------------------------------------------------------------------ printing
def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def cpu_sums_rows(report: Report) -> list[list[str]]:
    """Per part: CPU ms per order in the window, then fully handled, summed per group of processes."""
    rows = []
    for name, part in report.probes.items():
        splits = part.cpu_split or {"window": bench_probe.split_sums(part.cpu_ms_per_order, report.groups)}
        figures = [("in the window", f"{part.seconds:.1f} s", splits["window"])]
        if "handled" in splits:
            how = "fully handled"
            if part.drain_timed_out:
                how += f" (drain timed out, {part.drain_remaining:,} left)"
            figures.append((how, f"+ {part.drain_seconds or 0:.1f} s drain", splits["handled"]))
        for i, (how, seconds, sums) in enumerate(figures):
            rows.append([name if i == 0 else "", str(part.orders) if i == 0 else "", how, seconds,
                         *(_f(sums[g] if part.orders else None, 2) for g in (*bench_probe.GROUPS, bench_probe.ALL))])
    return rows


def cpu_sums_table(report: Report) -> Table:
    table = Table("part", "orders", "CPU ms per order", "time", *bench_probe.GROUPS, bench_probe.ALL,
                  title="5. CPU per order, in the window and fully handled (window + drain), per group of processes")
    for row in cpu_sums_rows(report):
        table.add_row(*row)
    return table


def cpu_processes_table(report: Report) -> Table:
    names = sorted({n for p in report.probes.values() for n in p.cpu_ms_per_order} | set(report.peak_rss_mib),
                   key=lambda n: (GROUP_ORDER.get(report.groups.get(n, ""), 0), n))
    parts = list(report.probes)
    drained = any(p.cpu_ms_per_order_handled for p in report.probes.values())
    how = "\nwindow / fully handled" if drained else ""
    table = Table("process", "group", *(f"CPU ms/order {p}{how}" for p in parts), "peak RSS MiB",
                  title="5. CPU per order and peak memory per process")

    def cell(part: PartProbe, name: str) -> str:
        window = _f(part.cpu_ms_per_order.get(name), 2)
        return f"{window} / {_f(part.cpu_ms_per_order_handled.get(name), 2)}" if part.cpu_ms_per_order_handled \
            else window

    for name in names:
        table.add_row(name, report.groups.get(name, ""), *(cell(report.probes[p], name) for p in parts),
                      _f(report.peak_rss_mib.get(name), 0))
    return table


POSTGRES_SETTINGS = ("autovacuum", "shared_buffers", "synchronous_commit", "fsync")


def _database_facts(report: Report, database_url: str) -> None:
    """The database server's version and the settings that move every figure, next to the machine's facts."""
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            values = {name: conn.execute(f"SHOW {name}").fetchone() for name in POSTGRES_SETTINGS}
    except psycopg.Error as exc:
        report.notes.append(f"the database's settings could not be read: {exc}")
        return
    shown = {name: str(row[0]) if row else "?" for name, row in values.items()}
    report.machine["postgres"] = f"{version[0] if version else '?'} · " + " · ".join(
        f"{name} {value}" for name, value in shown.items())
    if shown["autovacuum"] == "off":
        report.notes.append(
            "autovacuum is off on this database server: the rows the system updates (outbox, inbox positions, event "
            "streams, messages, orders) keep their dead versions for the whole run, and nothing refreshes the "
            "planner's statistics; production runs autovacuum.")


GROUP_ORDER = {bench_probe.SERVICES: 0, bench_probe.SANDBOXES: 1, bench_probe.INFRASTRUCTURE: 2,
               bench_probe.BENCH_CLIENT: 3}


def print_report(report: Report) -> None:
    facts = report.machine
    console.print(
        f"[bold]machine[/]: {facts.get('cpu')} · nproc {facts.get('nproc')} · memory {facts.get('memory', '?')} · "
        f"Python {facts.get('python')} · {facts.get('os')} · {report.date}"
    )
    if facts.get("postgres"):
        console.print(f"[bold]postgres[/]: {facts['postgres']}")
    console.print(f"[bold]load client[/]: {report.load_client}   [bold]processes[/]: "
                  + (", ".join(f"{p['name']} ({p['pid']})" for p in report.processes) or "unknown (no run file)"))
    if report.raw or report.bare_http:
        table = Table("limit", "clients", "per second", "p50 ms", "p99 ms", "error", title="1. raw limits")
        for figures in report.raw.values():
            table.add_row(str(figures.get("what")), str(figures.get("clients")), _f(figures.get("rate")),
                          _f(figures.get("p50_ms"), 1), _f(figures.get("p99_ms"), 1), figures.get("error") or "")
        for row in report.bare_http:
            table.add_row(f"bare HTTP JSON endpoint ({row.get('client')})", str(row["clients"]), _f(row["rate"]),
                          _f(row.get("p50_ms"), 1), _f(row.get("p99_ms"), 1), row.get("first_error") or "")
        console.print(table)
    if report.placement:
        table = Table("clients", "orders", "errors", "orders/s", "p50 ms", "p99 ms",
                      title=f"2. placement over HTTP ({report.load_client})")
        for row in report.placement:
            table.add_row(str(row["clients"]), str(row.get("ok")), str(row.get("errors")), _f(row["rate"]),
                          _f(row.get("p50_ms"), 1), _f(row.get("p99_ms"), 1))
        console.print(table)
    if report.card_orders:
        table = Table("clients", "confirmed", "errors", "orders/s", "p50 ms", "p99 ms",
                      title="3. card orders placed → paid → confirmed")
        for row in report.card_orders:
            table.add_row(str(row["clients"]), f"{row.get('confirmed')}/{row.get('started')}", str(row.get("errors")),
                          _f(row["rate"], 1), _f(row.get("p50_ms")), _f(row.get("p99_ms")))
        console.print(table)
    if report.probes:
        table = Table("part", "lag", "of", "events", "p50 ms", "p99 ms", "events/s",
                      title="4. lags (from the services' histograms; as coarse as their buckets)")
        for part, probe in report.probes.items():
            for service, figures in probe.commit_to_published.items():
                table.add_row(part, "commit → published", service, _f(figures["events"]), _f(figures["p50_ms"], 1),
                              _f(figures["p99_ms"], 1), _f(probe.published_per_s.get(service)))
            for queue, figures in probe.published_to_handled.items():
                table.add_row(part, "published → handled", queue, _f(figures["events"]), _f(figures["p50_ms"], 1),
                              _f(figures["p99_ms"], 1), _f(probe.handled_per_s.get(queue)))
            if not probe.published_to_handled:
                for queue, rate in probe.handled_per_s.items():
                    table.add_row(part, "published → handled", queue, "", "n/a", "n/a", _f(rate))
            if not probe.commit_to_published and not probe.handled_per_s:
                table.add_row(part, "n/a (no metrics ports)", "", "", "", "", "")
        console.print(table)
        console.print(cpu_sums_table(report))
        console.print(cpu_processes_table(report))
    if report.ratios:
        table = Table("figure", "value", "raw limit", "limit", "ratio", title="6. throughput ÷ the matching raw limit")
        for r in report.ratios:
            table.add_row(r["figure"], _f(r["value"]), r["limit"], _f(r["limit_value"]),
                          "-" if r["ratio"] is None else f"{r['ratio'] * 100:.1f} %")
        console.print(table)
    if report.targets:
        table = Table("target (issue #10)", "measured", "goal", "met", title="targets")
        for t in report.targets:
            table.add_row(t["target"], _f(t["measured"], 1), t["goal"], "yes" if t["met"] else "[red]no[/]")
        console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note[/]: {note}", soft_wrap=True)
