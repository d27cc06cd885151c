"""What ``oms demo``, ``oms place-test-order`` and ``oms bench`` share as clients of a running system.

The options every such command takes, where the API and the developer key are, how a problem+json reads,
the reachability checks done before starting, and the figures (percentile, machine facts) of their reports.
Its own module so that demo and bench do not import each other.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

API_PREFIX = "/api/v1"
DEV_KEY_FILE = "dev-api-key"
"""The developer key ``oms run`` saves in OMS_STATE_DIR (see ``oms apikey dev-key``)."""


def settings() -> Any:
    """Every setting of every service in the registry, as one namespace: the CLI is a client of all of them
    (the gateway's address, the payment provider's, the state directory). A bad value: the readable error."""
    from types import SimpleNamespace

    from shared.config import Settings, load
    from shared.registry import settings_classes

    values: dict[str, Any] = {}
    classes: list[type[Settings]] = [Settings, *settings_classes().values()]
    for cls in classes:
        instance = load(cls)
        for name in cls.model_fields:
            values.setdefault(name, getattr(instance, name))
    return SimpleNamespace(**values)


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
    key = read_dev_key(settings)
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


# Options every command that talks to a running system takes (demo, place-test-order, bench).
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="OMS_API_KEY", help="API key (default: the developer key).")
]
UrlOption = Annotated[str | None, typer.Option("--url", help="API base URL (default: from OMS_HTTP_HOST/PORT).")]
SandboxUrlOption = Annotated[
    str | None,
    typer.Option("--sandbox-url", help="The card payment provider (default: OMS_SANDBOX_PROVIDER_URL)."),
]


def check_reachable(base: str) -> None:
    import httpx

    try:
        httpx.get(f"{base}{API_PREFIX}/health", timeout=5)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]the API at {base} did not answer ({exc!r}); is `oms run` running?[/]")
        raise typer.Exit(1) from None


def check_provider(sandbox: str) -> None:
    """Card customers pay at the provider: without it nearly half the orders would fail, so say so at once."""
    import httpx

    try:
        httpx.get(f"{sandbox}/v1/payments/pay_reachability_check", timeout=5)  # any answer (404) will do
    except httpx.HTTPError as exc:
        err_console.print(
            f"[red]the payment provider at {sandbox} did not answer ({exc!r}); `oms run` starts the sandbox "
            "provider, or pass --sandbox-url.[/]"
        )
        raise typer.Exit(1) from None


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


def print_machine() -> None:
    """The machine's facts above every benchmark table: figures mean nothing without them."""
    facts = machine_facts()
    console.print(
        f"[bold]machine[/]: {facts.get('cpu')} · nproc {facts.get('nproc')} · memory {facts.get('memory', '?')} · "
        f"Python {facts['python']} · {facts['os']}"
    )




def read_dev_key(settings: Any) -> str | None:
    """The developer key saved by ``oms run`` (or ``OMS_API_KEY``), if any."""
    if os.environ.get("OMS_API_KEY"):
        return os.environ["OMS_API_KEY"]
    path = Path(settings.state_dir) / DEV_KEY_FILE
    return path.read_text().strip() if path.exists() else None
