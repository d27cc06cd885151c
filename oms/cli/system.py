"""``oms migrate``, ``oms run`` and ``oms config``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from oms.cli import common

console = Console()


def _command_for(name: str) -> list[str]:
    """``python ...`` for a process of the registry (``oms run <name>``)."""
    from shared.registry import process, processes

    try:
        return process(name).command()
    except KeyError:
        raise typer.BadParameter(f"unknown service {name!r}; known: {', '.join(p.name for p in processes())}") from None


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
    from shared.registry import processes

    names = services or [p.name for p in processes(development=True)]
    for name in names:
        _command_for(name)  # validates the name
    if len(names) == 1 and services:
        os.execv(sys.executable, _command_for(names[0]))  # become the service: signals reach it directly
    _supervise(names)


def _supervise(names: list[str]) -> None:
    settings = common.settings()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name in names:
        procs[name] = subprocess.Popen(_command_for(name), start_new_session=True)
    key = _dev_api_key()
    base = common.base_url(settings)
    _wait_for_http(f"{base}/api/v1/health", timeout=30)
    console.print(f"\n[bold green]OMS is running[/]: {', '.join(names)}")
    console.print(f"  API:      {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json, docs: {base}/api/v1/docs)")
    if key:
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


def _dev_api_key() -> str | None:
    """The developer's API key, from ``oms apikey dev-key`` (the gateway's sub-app, mounted from the registry).

    Kept in OMS_STATE_DIR so every ``make run`` prints the same working key; None without an ``apikey`` app.
    """
    import contextlib
    import io

    from oms.cli import app

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            app(["apikey", "dev-key"], prog_name="oms", standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 - no key is a warning: the system runs without it
        console.print(f"[yellow]warning: no developer API key ({exc})[/]")
        return None
    return out.getvalue().strip().splitlines()[-1] if out.getvalue().strip() else None


def config() -> None:
    """Print every configuration variable of every service: default, current value (secrets masked), meaning."""
    from shared.config import config_rows, current_values

    current = current_values()  # a wrong value: the readable message naming the variable
    table = Table("variable", "used by", "default", "current", "meaning")
    for service, var, default, desc in config_rows():
        table.add_row(var, service, default, current.get(var, ""), desc)
    console.print(table)
