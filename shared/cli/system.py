"""``oms migrate``, ``oms run`` and ``oms config``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()

# Processes ``oms run`` starts with no argument (development: the whole system on one machine).
ALL_PROCESSES = ("orders", "payments", "gateway", "sandbox-provider")


def _command_for(name: str) -> list[str]:
    from shared.runtime import SERVICES

    if name in SERVICES:
        return [sys.executable, "-m", "shared.runtime", name]
    if name == "gateway":
        return [sys.executable, "-m", "services.gateway"]
    if name == "sandbox-provider":
        return [sys.executable, "-m", "services.payments.provider.sandbox"]
    raise typer.BadParameter(f"unknown service {name!r}; known: {', '.join(ALL_PROCESSES)}")


def _available(name: str) -> bool:
    """Services whose code exists in this checkout (later issues add more)."""
    import importlib.util

    from shared.runtime import SERVICES

    module = {
        "gateway": "services.gateway.app",
        "sandbox-provider": "services.payments.provider.sandbox",
    }.get(name) or SERVICES[name].split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def migrate() -> None:
    """Create the database and schemas if missing, apply migrations, declare the RabbitMQ topology."""
    from shared.config import get_settings
    from shared.migrate import migrate as do_migrate

    applied = do_migrate(get_settings())
    for schema, ids in applied.items():
        console.print(f"[green]{schema}[/]: " + (", ".join(ids) if ids else "up to date"))


def run(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to run; none = all of them (development).")
    ] = None,
) -> None:
    """Run services. One name: that service in this process (production). None: everything (development)."""
    names = services or [n for n in ALL_PROCESSES if _available(n)]
    for name in names:
        _command_for(name)  # validates the name
    if len(names) == 1 and services:
        os.execv(sys.executable, _command_for(names[0]))  # become the service: signals reach it directly
    _supervise(names)


def _supervise(names: list[str]) -> None:
    from shared.config import get_settings

    settings = get_settings()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name in names:
        procs[name] = subprocess.Popen(_command_for(name), start_new_session=True)
    key = _dev_api_key(settings)
    from services.gateway.settings import get_settings as gateway_settings

    api = gateway_settings()
    base = f"http://{api.http_host}:{api.http_port}"
    _wait_for_http(f"{base}/api/v1/health", timeout=30)
    console.print(f"\n[bold green]OMS is running[/]: {', '.join(names)}")
    console.print(f"  API:      {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json, docs: {base}/api/v1/docs)")
    console.print(f"  API key:  [bold]{key}[/]   (send as 'Authorization: Bearer <key>')")
    console.print("  Events:   oms events tail      Dead letters: oms dlq list      Ctrl-C stops everything\n")
    try:
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    console.print(f"[red]{name} exited with {proc.returncode}; stopping everything[/]")
                    stopping = True
                    break
            time.sleep(0.3)
    finally:
        _stop_all(procs)


def _stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.print(f"[yellow]{name} did not stop in time; killing it[/]")
            proc.kill()
            proc.wait()
    console.print("stopped.")


def _wait_for_http(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    console.print(f"[yellow]warning: {url} did not answer within {timeout:.0f}s[/]")


def _dev_api_key(settings: object) -> str:
    """The developer's API key, kept in OMS_STATE_DIR so every `make run` prints the same working key."""
    from shared.cli.apikey import ensure_dev_key

    return ensure_dev_key(settings)


def config() -> None:
    """Print every configuration variable, its default and its current value."""
    from services.gateway.settings import GatewaySettings  # until the registry lists them all
    from services.orders.settings import OrdersSettings
    from services.payments.settings import PaymentsSettings, SandboxSettings
    from shared.config import load, settings_table

    classes = (GatewaySettings, OrdersSettings, PaymentsSettings, SandboxSettings)
    current = [load(cls) for cls in classes]  # a wrong value: the readable message naming the variable
    table = Table("variable", "default", "current", "meaning")
    for var, default, desc in settings_table(*classes):
        name = var.removeprefix("OMS_").lower()
        value = next(getattr(s, name) for s in current if name in type(s).model_fields)
        table.add_row(var, default, str(value), desc)
    console.print(table)


def state_dir(settings: object) -> Path:
    path = Path(settings.state_dir)  # type: ignore[attr-defined]
    path.mkdir(parents=True, exist_ok=True)
    return path
