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
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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

    def current_pids(self) -> list[int]:
        """A group's processes now (backends come and go); a single process's pid."""
        if self.name in INFRA:
            return pids_named(INFRA[self.name], self.database)
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


def scrape(processes: Iterable[Watched], timeout: float = 3.0) -> MetricsSnapshot:
    import httpx

    snap = MetricsSnapshot()
    for w in processes:
        if not w.metrics_port:
            continue
        try:
            text = httpx.get(f"http://127.0.0.1:{w.metrics_port}/metrics", timeout=timeout).text
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
