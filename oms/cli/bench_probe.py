"""What ``oms bench`` reads from the running system's processes, before and after each part.

- CPU time (utime + stime from ``/proc/<pid>/stat``) and peak resident memory (``VmHWM`` from
  ``/proc/<pid>/status``), for every process ``oms run`` lists in its run file, and for Postgres and RabbitMQ
  found by process name when readable (Linux; as root or the same user). Postgres counts only the backends
  connected to the system's database (their title names it): the server may be busy with other databases,
  and the services keep their connections in pools, so their backends live through a part. Its shared
  background processes (WAL writer, checkpointer) are left out.
- Prometheus histograms from each process's metrics port (``oms_outbox_publish_lag_seconds{schema}``, commit →
  published; ``oms_event_handle_lag_seconds{queue}``, published → handled, where the services export it) and
  counters (events published, events handled). A part's percentiles come from the bucket counts' difference
  after − before, summed over a service's processes, interpolated inside a bucket as Prometheus's
  ``histogram_quantile`` does (so they are as coarse as the buckets).
- Whether the system is idle, for "CPU per order until fully handled" (``Drainer``): consumers lag behind
  placement, so the work an order causes is partly done after the window it was placed in. After a part, the
  benchmark waits until every queue the services consume (and the retry delay queues) is empty, no outbox has
  an unpublished row, the consumers' handled and the relays' published counters stop moving (a message being
  handled is unacked: a passive declare does not count it, the counter moves when it is done), and the
  system's processes together use under 1 % of a core each for 2 s (the notifications sender exposes no "due"
  figure; a message being sent shows as CPU). The queue names come from the topology ``oms migrate`` declares
  (``shared.migrate.subscriptions``), so a remote broker without the management API works too.
"""


from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
INFRA = {"postgres": ("postgres",), "rabbitmq": ("beam.smp",)}
"""Infrastructure measured beside the system: group -> process names (``/proc/<pid>/comm``)."""

OUTBOX_LAG = "oms_outbox_publish_lag_seconds"
HANDLE_LAG = "oms_event_handle_lag_seconds"
PUBLISHED = "oms_outbox_published_total"
HANDLED = "oms_events_handled_total"


# ------------------------------------------------------------------------------------------------ /proc
def cpu_seconds(pid: int, *, children: bool = False) -> float | None:
    """utime + stime (+ reaped children's) of ``pid`` in seconds; None if it is gone or unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float | None:
    """``VmHWM``: the most resident memory the process has had, MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def pids_named(names: Iterable[str], database: str | None = None) -> list[int]:
    """Processes whose name is one of ``names``; with ``database``, only those whose title names it (Postgres
    backends: ``postgres: 15/main: user DATABASE 127.0.0.1(5432) idle``)."""
    wanted = set(names)
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "comm").read_text().strip() not in wanted:
                continue
            if database is not None:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
                if database not in title:
                    continue
            found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return sorted(found)


@dataclass(frozen=True)
class Watched:
    """A process (or a group: Postgres, RabbitMQ) whose CPU and memory are reported."""

    name: str
    pids: tuple[int, ...]
    infra: bool = False
    metrics_port: int | None = None
    service: str | None = None
    database: str | None = None
    """For Postgres: only backends of this database."""
    exclude: tuple[int, ...] = ()
    """Processes of a group that are not the system's (the benchmark's own Postgres backend)."""

    def current_pids(self) -> list[int]:
        """A group's processes now (backends come and go); a single process's pid."""
        if self.name in INFRA:
            return [pid for pid in pids_named(INFRA[self.name], self.database) if pid not in self.exclude]
        return list(self.pids)


def watched(
    run_processes: Iterable[Mapping[str, object]], *, database: str | None = None, include_self: bool = True
) -> list[Watched]:
    """The system's processes from the run file, then Postgres and RabbitMQ, then this benchmark itself."""
    out = []
    for p in run_processes:
        pid, port = p.get("pid"), p.get("metrics_port")
        if isinstance(pid, int):
            out.append(Watched(str(p.get("name")), (pid,), False, port if isinstance(port, int) else None,
                               str(p.get("service") or p.get("name"))))
    for group, names in INFRA.items():
        db = database if group == "postgres" else None
        pids = pids_named(names, db)
        if pids:
            out.append(Watched(f"{group}", tuple(pids), True, database=db))
    if include_self:
        out.append(Watched("bench client", (os.getpid(),), True))
    return out


def cpu_snapshot(processes: Iterable[Watched]) -> dict[str, float]:
    """name -> CPU seconds so far. For a group, pids found now (backends started since are counted too)."""
    return {w.name: sum(cpu_seconds(pid) or 0.0 for pid in w.current_pids()) for w in processes}


def peak_rss(processes: Iterable[Watched]) -> dict[str, float]:
    """name -> peak RSS MiB (for a group: its largest process; shared memory is counted in each)."""
    out = {}
    for w in processes:
        values = [v for v in (peak_rss_mib(pid) for pid in w.current_pids()) if v is not None]
        if values:
            out[w.name] = max(values)
    return out


# ------------------------------------------------------------------------------------------------ metrics
# (metric, label value) -> {le: cumulative count} for histograms, or {"": value} for counters.
Samples = dict[tuple[str, str], dict[float, float]]


@dataclass
class MetricsSnapshot:
    """Per service (summed over its processes): histogram buckets and counters, keyed by (metric, label)."""

    by_service: dict[str, Samples] = field(default_factory=dict)
    unreachable: list[str] = field(default_factory=list)


def parse_metrics(text: str) -> Samples:
    """Histogram buckets and the two counters of interest from a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in (f"{OUTBOX_LAG}_bucket", f"{HANDLE_LAG}_bucket"):
                label = s.labels.get("schema") or s.labels.get("queue") or ""
                le = float(s.labels["le"])
                key = (s.name.removesuffix("_bucket"), label)
                samples[key][le] = samples[key].get(le, 0.0) + s.value
            elif s.name == PUBLISHED:
                key = (PUBLISHED, s.labels.get("schema", ""))
                samples[key][0.0] = samples[key].get(0.0, 0.0) + s.value
            elif s.name == HANDLED:
                key = (f"{HANDLED}:{s.labels.get('outcome', '')}", s.labels.get("queue", ""))
                samples[key][0.0] = samples[key].get(0.0, 0.0) + s.value
    return dict(samples)


def _add(into: Samples, more: Samples) -> None:
    for key, buckets in more.items():
        target = into.setdefault(key, {})
        for le, value in buckets.items():
            target[le] = target.get(le, 0.0) + value


@lru_cache(maxsize=1)
def _http() -> Any:
    """One client for every scrape: ``httpx.get`` builds a client, and with it an SSL context (~0.1 s of CPU),
    per call; the drain scrapes every second."""
    import httpx

    return httpx.Client()


def scrape(processes: Iterable[Watched], timeout: float = 3.0) -> MetricsSnapshot:
    import httpx

    snap = MetricsSnapshot()
    for w in processes:
        if not w.metrics_port:
            continue
        try:
            text = _http().get(f"http://127.0.0.1:{w.metrics_port}/metrics", timeout=timeout).text
        except httpx.HTTPError:
            snap.unreachable.append(w.name)
            continue
        _add(snap.by_service.setdefault(w.service or w.name, {}), parse_metrics(text))
    return snap


def delta(before: Samples, after: Samples) -> Samples:
    out: Samples = {}
    for key, buckets in after.items():
        old = before.get(key, {})
        out[key] = {le: value - old.get(le, 0.0) for le, value in buckets.items()}
    return out


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile (0..1) of cumulative ``le -> count`` buckets, linear inside a bucket; None if empty.

    As Prometheus does: the +Inf bucket answers with the largest finite bound.
    """
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if le == float("inf"):
                return lower
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = le, count
    return lower


def histogram_count(buckets: Mapping[float, float]) -> float:
    return buckets.get(float("inf"), max(buckets.values(), default=0.0))


# ------------------------------------------------------------------------------------------------ groups of processes
SERVICES, INFRASTRUCTURE, SANDBOXES, BENCH_CLIENT = "services", "infrastructure", "sandboxes", "bench client"
GROUPS = (SERVICES, INFRASTRUCTURE, SANDBOXES)
"""How a sum of CPU splits: the OMS processes, Postgres + RabbitMQ, and the stand-ins for third parties (mail
catcher, messaging, carrier, payment provider: ``development_only`` in the registry) that production would not
run."""
ALL = "all processes"


def group_of(w: Watched, sandboxes: Collection[str]) -> str:
    """The group of a watched process; ``sandboxes``: the registry's development-only process names."""
    if w.name == BENCH_CLIENT:
        return BENCH_CLIENT
    if w.infra:
        return INFRASTRUCTURE
    return SANDBOXES if (w.service or w.name) in sandboxes else SERVICES


def split_sums(per_process: Mapping[str, float], groups: Mapping[str, str]) -> dict[str, float]:
    """A per-process figure summed per group, and over all processes (the benchmark itself is in none)."""
    out = dict.fromkeys(GROUPS, 0.0)
    for name, value in per_process.items():
        default = BENCH_CLIENT if name == BENCH_CLIENT else INFRASTRUCTURE if name in INFRA else SERVICES
        group = groups.get(name, default)
        if group != BENCH_CLIENT:
            out[group] += value
    out[ALL] = sum(out[g] for g in GROUPS)
    return out


# ------------------------------------------------------------------------------------------------ waiting until idle
@dataclass(frozen=True)
class DrainSample:
    """What is left to do at one moment, and the counters and CPU that show work still going on."""

    at: float
    queued: Mapping[str, int]
    """Queue -> messages ready (not yet delivered, or waiting in a retry delay queue)."""
    outboxes: Mapping[str, int]
    """Schema -> outbox rows not yet published."""
    handled: float
    """Events handled so far (every consumer, every outcome), from the metrics ports."""
    published: float
    """Events published so far by every relay, from the metrics ports."""
    busy_cpu: float
    """CPU seconds so far of the processes whose quiet is required (the system's, its database backends)."""
    cpu: Mapping[str, float] = field(default_factory=dict)
    """Every watched process's CPU seconds so far (the figures "until fully handled" are read from here)."""

    @property
    def remaining(self) -> int:
        return sum(self.queued.values()) + sum(self.outboxes.values())

    def describe(self) -> str:
        queued, unpublished = sum(self.queued.values()), sum(self.outboxes.values())
        top = sorted(((n, q) for q, n in self.queued.items() if n), reverse=True)[:2]
        where = f" ({', '.join(f'{q} {n:,}' for n, q in top)})" if top else ""
        return f"{queued:,} messages queued{where}, {unpublished:,} events in outboxes"


@dataclass(frozen=True)
class Verdict:
    idle: bool
    quiet_from: DrainSample | None
    """The first sample of the current quiet stretch: when idle, the moment the work was done."""
    status: str


QUIET_SECONDS = 2.0
MAX_CPU_SHARE = 0.05
IDLE_SHARE_PER_PROCESS = 0.01
"""Idle = the system's processes together under 1 % of one core each (5 % at least) for 2 s. An idle process
still polls (Nameko heartbeats, the sender's and timers' loops): measured on the 2-core machine, the ten
processes of ``oms run`` and the database's backends used 4-6 % of a core together with nothing to do."""


def max_cpu_share(processes: int) -> float:
    """The CPU share (of one core) under which ``processes`` processes count as idle."""
    return max(MAX_CPU_SHARE, IDLE_SHARE_PER_PROCESS * processes)


def settle(
    quiet_from: DrainSample | None, now: DrainSample, *, quiet_seconds: float = QUIET_SECONDS,
    max_cpu_share: float = MAX_CPU_SHARE,
) -> Verdict:
    """Is the system idle at ``now``, given the quiet stretch so far (``quiet_from``)?

    Idle when nothing is queued or unpublished, and since ``quiet_from`` (at least ``quiet_seconds`` ago) no
    event was handled or published and the processes used less than ``max_cpu_share`` of a core. Anything
    moving starts the stretch again at ``now``.
    """
    if now.remaining:
        return Verdict(False, None, now.describe())
    if quiet_from is None or now.handled != quiet_from.handled or now.published != quiet_from.published:
        return Verdict(False, now, "queues and outboxes empty; events still being handled or published")
    elapsed = now.at - quiet_from.at
    share = (now.busy_cpu - quiet_from.busy_cpu) / elapsed if elapsed > 0 else 0.0
    if elapsed < quiet_seconds:
        return Verdict(False, quiet_from, f"queues and outboxes empty; checking quiet for {quiet_seconds:g} s")
    if share >= max_cpu_share:
        return Verdict(False, now, f"queues and outboxes empty; processes still busy ({share:.0%} of a core)")
    return Verdict(True, quiet_from, "idle")


@dataclass
class DrainResult:
    seconds: float
    """From the end of the part's window to the moment the work was done (or to the timeout)."""
    timed_out: bool
    remaining: int
    status: str
    cpu: dict[str, float]
    """Every watched process's CPU seconds at that moment."""


def consumed_queues(retry_delays: Iterable[int]) -> list[str]:
    """Every queue the services consume (their ``@subscribe`` declarations, as ``oms migrate`` declares them),
    then the retry delay queues (a message there comes back to its queue: work not done yet). The dead-letter
    queue is left out: it waits for a person."""
    import warnings

    from shared.amqp import delay_queue_name
    from shared.migrate import subscriptions

    with warnings.catch_warnings():  # eventlet's deprecation notice, printed when Nameko is imported
        warnings.simplefilter("ignore")
        topology = subscriptions()
    return [s.queue for s in topology.subscriptions] + [delay_queue_name(s) for s in retry_delays]


def outbox_schemas() -> list[str]:
    """The schemas with the shared outbox table (services that publish or consume events)."""
    from shared.registry import services

    return [s.schema for s in services() if s.schema and s.backbone]


class Drainer:
    """Reads what is left to do (queue depths by passive declare, unpublished outbox rows, counters, CPU) and
    waits until the system is idle. Holds one AMQP and one Postgres connection for the whole run; its Postgres
    backend is excluded from the Postgres group (``own_backend``)."""

    def __init__(
        self, amqp_url: str, database_url: str, queues: Iterable[str], schemas: Iterable[str], *,
        interval: float = 1.0,
    ) -> None:
        self.amqp_url, self.database_url = amqp_url, database_url
        self.queues = list(queues)
        self.schemas = list(schemas)
        self.interval = interval
        self.missing: set[str] = set()
        self._amqp: Any = None
        self._channel: Any = None
        self._db: Any = None
        self.own_backend: int | None = None

    def open(self) -> Drainer:
        import psycopg

        from shared.db import check_ident

        self._db = psycopg.connect(self.database_url, autocommit=True)
        self.own_backend = self._db.execute("SELECT pg_backend_pid()").fetchone()[0]
        self._outbox_sql = [
            (schema, f"SELECT count(*) FROM {check_ident(schema)}.outbox WHERE published_at IS NULL")
            for schema in self.schemas
        ]
        self._connect_amqp()
        return self

    def close(self) -> None:
        for conn in (self._amqp, self._db):
            try:
                if conn is not None:
                    conn.close()
            except Exception:  # noqa: BLE001, S110 - closing at the end: nothing left to save
                pass

    def _connect_amqp(self) -> None:
        from shared.amqp import connect

        self._amqp = connect(self.amqp_url)
        self._channel = self._amqp.channel()

    def queue_depths(self) -> dict[str, int]:
        """Queue -> messages ready, by ``queue_declare(passive=True)`` (creates nothing). A queue that does not
        exist (a service not migrated) is skipped from then on."""
        import amqp

        depths: dict[str, int] = {}
        for queue in self.queues:
            if queue in self.missing:
                continue
            try:
                depths[queue] = self._channel.queue_declare(queue, passive=True).message_count
            except amqp.exceptions.NotFound:
                self.missing.add(queue)
                self._channel = self._amqp.channel()  # the broker closed the channel with the 404
        return depths

    def outbox_backlog(self) -> dict[str, int]:
        import psycopg

        backlog: dict[str, int] = {}
        for schema, sql in self._outbox_sql:
            try:
                backlog[schema] = int(self._db.execute(sql).fetchone()[0])
            except psycopg.errors.UndefinedTable:
                continue  # a schema not migrated: no outbox to wait for
        return backlog

    def sample(self, watched: list[Watched], quiet: Collection[str]) -> DrainSample:
        import amqp

        try:
            depths = self.queue_depths()
        except (OSError, amqp.exceptions.AMQPError):
            self._connect_amqp()  # the connection was lost (idle for a long part): once more on a new one
            depths = self.queue_depths()
        backlog = self.outbox_backlog()
        handled = published = 0.0
        for samples in scrape(watched).by_service.values():
            for (metric, _label), values in samples.items():
                if metric.startswith(f"{HANDLED}:"):
                    handled += values.get(0.0, 0.0)
                elif metric == PUBLISHED:
                    published += values.get(0.0, 0.0)
        cpu = cpu_snapshot(watched)
        return DrainSample(time.monotonic(), depths, backlog, handled, published,
                           sum(v for k, v in cpu.items() if k in quiet), cpu)

    def wait(
        self, watched: list[Watched], quiet: Collection[str], timeout: float, say: Callable[[str], None],
    ) -> DrainResult:
        """Sample every ``interval`` until ``settle`` says idle or ``timeout`` seconds pass; ``say`` shows progress.
        The result's time and CPU are those of the start of the final quiet stretch: the seconds spent
        confirming the quiet are charged to nobody."""
        start = time.monotonic()
        quiet_from: DrainSample | None = None
        while True:
            now = self.sample(watched, quiet)
            verdict = settle(quiet_from, now, max_cpu_share=max_cpu_share(len(quiet)))
            quiet_from = verdict.quiet_from
            if verdict.idle and quiet_from is not None:
                return DrainResult(quiet_from.at - start, False, 0, "idle", dict(quiet_from.cpu))
            waited = now.at - start
            if waited >= timeout:
                return DrainResult(waited, True, now.remaining, verdict.status, dict(now.cpu))
            say(f"{verdict.status} ({waited:.0f} s of at most {timeout:g})")
            time.sleep(self.interval)
