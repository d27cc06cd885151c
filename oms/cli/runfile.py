"""What ``oms run`` started, written where ``oms bench`` can find it: ``OMS_STATE_DIR/processes.json``.

The benchmark measures the system's processes from outside (CPU time and peak memory from ``/proc``, latency
histograms from each process's Prometheus endpoint), so it must know their pids and metrics ports. ``oms run``
knows them; it writes them down at every (re)start and removes the file when it stops.

Also here: how ``oms run --processes orders=2`` turns into processes (``orders``, ``orders#2``) and which
metrics port each one gets (``OMS_METRICS_PORT`` + its index), so that the run file and the processes agree.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RUN_FILE = "processes.json"
SEPARATOR = "#"
"""``orders#2``: the second process of the orders service (the first keeps the plain name)."""


@dataclass(frozen=True)
class PlannedProcess:
    name: str
    """Unique among the run's processes: ``orders``, ``orders#2``."""
    service: str
    """The registry process it runs (``oms run <service>``)."""
    metrics_port: int | None = None


def parse_counts(values: Iterable[str]) -> dict[str, int]:
    """``["orders=2,payments=2", "gateway=1"]`` -> ``{"orders": 2, "payments": 2, "gateway": 1}``."""
    counts: dict[str, int] = {}
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            name, sep, number = part.partition("=")
            try:
                count = int(number)
            except ValueError:
                count = 0
            if not sep or not name.strip() or count < 1 or count > 32:
                raise ValueError(f"{part.strip()!r} is not NAME=N with N from 1 to 32 (e.g. orders=2)")
            counts[name.strip()] = count
    return counts


def plan(
    names: Iterable[str], counts: Mapping[str, int], metrics_base: int, serves_metrics: Iterable[str]
) -> list[PlannedProcess]:
    """Every process to start: ``counts[name]`` of each (1 by default). With ``metrics_base`` (0 = off), each
    process that serves metrics (a Nameko service) gets its own port, base + its index among those."""
    metric_names = set(serves_metrics)
    planned: list[PlannedProcess] = []
    index = 0
    for name in names:
        for i in range(1, counts.get(name, 1) + 1):
            port = None
            if metrics_base and name in metric_names:
                port = metrics_base + index
                index += 1
            planned.append(PlannedProcess(name if i == 1 else f"{name}{SEPARATOR}{i}", name, port))
    return planned


def run_file(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / RUN_FILE


def write(state_dir: str | os.PathLike[str], planned: Iterable[PlannedProcess], pids: Mapping[str, int]) -> Path:
    """Write (atomically) the running processes: name, service, pid, metrics port."""
    path = run_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "supervisor_pid": os.getpid(),
        "written_at": time.time(),
        "processes": [{**asdict(p), "pid": pids[p.name]} for p in planned if p.name in pids],
    }
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2))
    tmp.replace(path)
    return path


def remove(state_dir: str | os.PathLike[str]) -> None:
    run_file(state_dir).unlink(missing_ok=True)


def read(state_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The processes of the running system (empty if ``oms run`` is not running here or wrote no file)."""
    path = run_file(state_dir)
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    supervisor = document.get("supervisor_pid")
    if isinstance(supervisor, int) and not Path(f"/proc/{supervisor}").exists() and Path("/proc").exists():
        return []  # a file left behind by an `oms run` that was killed
    processes = document.get("processes")
    return [p for p in processes if isinstance(p, dict)] if isinstance(processes, list) else []
