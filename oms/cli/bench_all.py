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
5. CPU ms per order per process (``/proc``) and peak RSS per process, Postgres and RabbitMQ included;
6. every throughput as a ratio to the matching raw limit, and the issue's targets, met or not.

The processes come from ``oms run``'s run file (``OMS_STATE_DIR/processes.json``), so new services and extra
processes join the report without a change here. ``--json FILE`` writes every figure.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
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
    """CPU and metrics of the system's processes over one part (placement, card orders)."""

    orders: int = 0
    seconds: float = 0.0
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
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

    def finish(self, orders: int) -> PartProbe:
        seconds = time.monotonic() - self.start
        cpu = bench_probe.cpu_snapshot(self.watched)
        metrics = bench_probe.scrape(self.watched)
        part = PartProbe(orders=orders, seconds=seconds)
        if orders:
            part.cpu_ms_per_order = {
                name: (cpu[name] - self.cpu.get(name, 0.0)) * 1000 / orders for name in cpu
            }
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
    )
    _explain_setup(report, run_processes, settings)

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
            if "place" in parts:
                _place_part(report, watched, base, key, levels, seconds, use_wrk, step, done)
            if "pay" in parts:
                _pay_part(report, watched, base, key, sandbox, settings.amqp_url, pay_levels, pay_orders, step,
                          done)
            step("done")
    except KeyboardInterrupt:
        err_console.print("interrupted; the figures so far:")
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


def _place_part(
    report: Report, watched: list[bench_probe.Watched], base: str, key: str, levels: list[int], seconds: float,
    use_wrk: bool, step: Any, done: Any,
) -> None:
    from oms.cli.bench import _order_body

    body = json.dumps(_order_body(random.Random(0)))
    headers = {"Authorization": f"Bearer {key}"}
    probe = Probe(watched)
    placed = 0
    for c in levels:
        step(f"placement: {c} client(s), {seconds:g} s")
        result = bench_load.run_level(f"{base}/api/v1/orders", c, seconds, body, headers, use_wrk=use_wrk)
        report.placement.append(_load_dict(result))
        placed += result.ok
        done()
        time.sleep(1)  # let the events of this level drain before the next
    time.sleep(2)
    report.probes["placement"] = probe.finish(placed)


def _pay_part(
    report: Report, watched: list[bench_probe.Watched], base: str, key: str, sandbox: str, amqp_url: str,
    levels: list[int], orders: int, step: Any, done: Any,
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
            step(f"card orders: {orders} placed → paid → confirmed, {c} client(s)")
            result = asyncio.run(pay_level(base, key, sandbox, c, orders, max_seconds=120))
            _collect_confirmations(listener, result, 30)
            confirmed += result.confirmed
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
    card = report.probes.get("card_orders")
    if card and card.cpu_ms_per_order:
        total = sum(v for k, v in card.cpu_ms_per_order.items() if k != "bench client")
        target("CPU ms per card order, all processes (Postgres, RabbitMQ included)", total, "≤ 10",
               total <= TARGETS["cpu_ms_per_card_order"])
    services = {p["name"]: p for p in report.processes}
    rss = {k: v for k, v in report.peak_rss_mib.items() if k in services}
    if rss:
        worst = max(rss, key=lambda k: rss[k])
        target(f"peak RSS MiB per service process (largest: {worst})", rss[worst], "< 150",
               rss[worst] < TARGETS["peak_rss_mib_per_service"])


# ------------------------------------------------------------------------------------------------ printing
def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_report(report: Report) -> None:
    facts = report.machine
    console.print(
        f"[bold]machine[/]: {facts.get('cpu')} · nproc {facts.get('nproc')} · memory {facts.get('memory', '?')} · "
        f"Python {facts.get('python')} · {facts.get('os')} · {report.date}"
    )
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
        names = sorted({n for p in report.probes.values() for n in p.cpu_ms_per_order} | set(report.peak_rss_mib),
                       key=lambda n: (n in bench_probe.INFRA or n == "bench client", n))
        parts = list(report.probes)
        table = Table("process", *(f"CPU ms/order: {p}" for p in parts), "peak RSS MiB",
                      title="5. CPU per order and peak memory per process")
        for name in names:
            table.add_row(name, *(_f(report.probes[p].cpu_ms_per_order.get(name), 2) for p in parts),
                          _f(report.peak_rss_mib.get(name), 0))
        table.add_row("[bold]sum (without the bench client)[/]", *(
            _f(sum(v for k, v in report.probes[p].cpu_ms_per_order.items() if k != "bench client") or None, 2)
            for p in parts), "")
        console.print(table)
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
