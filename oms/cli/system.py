"""``oms migrate``, ``oms run`` and ``oms config``."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from oms.cli import common, runfile
from oms.cli.supervisor import RestartPolicy, Supervisor

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
    crash_limit: Annotated[
        int,
        typer.Option(
            min=1,
            help="Development: a process that crashes this many times within --crash-window stops everything "
            "(1 = stop at the first crash). Before that it is restarted.",
        ),
    ] = RestartPolicy.crash_limit,
    crash_window: Annotated[
        float, typer.Option(min=1, help="Development: seconds over which crashes are counted.")
    ] = RestartPolicy.window,
    restart_delay: Annotated[
        float,
        typer.Option(
            min=0,
            help="Development: seconds before restarting a crashed process the first time; doubles with each "
            f"crash within the window, up to {RestartPolicy.max_delay:g} s.",
        ),
    ] = RestartPolicy.first_delay,
    process_counts: Annotated[
        list[str] | None,
        typer.Option(
            "--processes",
            "-p",
            help="Development: run N processes of a Nameko service, e.g. `-p orders=2,payments=2` (they share "
            "its queues; one relay publishes). With OMS_METRICS_PORT set, each process gets its own metrics port "
            "(that port + its index).",
        ),
    ] = None,
) -> None:
    """Run services. One name: that service in this process (production). None: everything (development),
    restarting a process that crashes."""
    from shared.registry import nameko_classes, processes

    names = services or [p.name for p in processes(development=True)]
    for name in names:
        _command_for(name)  # validates the name
    try:
        counts = runfile.parse_counts(process_counts or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--processes") from None
    for name, count in counts.items():
        if name not in names:
            raise typer.BadParameter(f"{name!r} is not among the processes to run", param_hint="--processes")
        if count > 1 and name not in nameko_classes():
            raise typer.BadParameter(
                f"{name!r} listens on a fixed port: only Nameko services ({', '.join(nameko_classes())}) can run "
                "as several processes here",
                param_hint="--processes",
            )
    if len(names) == 1 and services and counts.get(names[0], 1) == 1:
        os.execv(sys.executable, _command_for(names[0]))  # become the service: signals reach it directly
    policy = RestartPolicy(
        crash_limit=crash_limit,
        window=crash_window,
        first_delay=restart_delay,
        max_delay=max(RestartPolicy.max_delay, restart_delay),
    )
    code = _supervise(names, policy, counts)
    if code:
        raise typer.Exit(code)


def _say(text: str) -> None:
    """One line of the supervisor, never wrapped (a log keeps it whole), never read as rich markup."""
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def _supervise(names: list[str], policy: RestartPolicy, counts: dict[str, int] | None = None) -> int:
    """Run every process until Ctrl-C/SIGTERM (0) or a crash loop (1); print the banner once the API answers.

    While running, ``OMS_STATE_DIR/processes.json`` lists every process's pid and metrics port, for ``oms bench``.
    """
    from shared.registry import nameko_classes

    settings = common.settings()
    stopping = False
    planned = runfile.plan(names, counts or {}, settings.metrics_port, nameko_classes())
    envs = {p.name: {"OMS_METRICS_PORT": str(p.metrics_port)} for p in planned if p.metrics_port}

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    supervisor = Supervisor({p.name: _command_for(p.service) for p in planned}, policy, say=_say, envs=envs)
    supervisor.start()
    code = 0
    written: dict[str, int] = {}
    try:
        key = _dev_api_key()
        owner = _dev_owner() if settings.env == "development" else None
        base = common.base_url(settings)
        health = f"{base}/api/v1/health"
        banner_deadline: float | None = time.monotonic() + 30
        while not stopping:
            reason = supervisor.check()
            if reason:
                console.print(reason, style="red", soft_wrap=True, markup=False, highlight=False)
                code = 1
                break
            pids = supervisor.pids()
            if pids != written:
                runfile.write(settings.state_dir, planned, pids)
                written = pids
            if banner_deadline is not None and (_answers(health) or time.monotonic() > banner_deadline):
                if time.monotonic() > banner_deadline:
                    _say(f"warning: {health} did not answer within 30 s")
                print_banner([p.name for p in planned], base, key, owner)
                banner_deadline = None
            time.sleep(0.3)
    finally:
        runfile.remove(settings.state_dir)
        supervisor.stop_all()
    return code


def print_banner(names: list[str], base: str, key: str | None, owner: tuple[str, str | None] | None = None) -> None:
    """What is running and where. Printed with ``soft_wrap``: in a log (stdout not a terminal, so 80 columns for
    rich) an address or the key split across two lines could not be copied."""
    lines = [
        f"\n[bold green]OMS is running[/]: {', '.join(names)}",
        f"  API:      {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json, docs: {base}/api/v1/docs)",
    ]
    if key:
        lines.append(f"  API key:  [bold]{key}[/]   (send as 'Authorization: Bearer <key>')")
    if owner:
        email, password = owner
        secret = f"password [bold]{password}[/]" if password else "password unchanged (oms staff password EMAIL)"
        lines.append(f"  Dashboard: {base}/   sign in as [bold]{email}[/], {secret}")
    lines.append("  Events:   oms events tail      Dead letters: oms dlq list      Ctrl-C stops everything\n")
    for line in lines:
        console.print(line, soft_wrap=True)


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


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


def _dev_owner() -> tuple[str, str | None] | None:
    """Development: the dashboard's owner ``owner@localhost`` and its password, from ``oms staff dev-owner``
    (created the first time with a generated password, kept in OMS_STATE_DIR); None without a ``staff`` app."""
    import contextlib
    import io

    from oms.cli import app

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            app(["staff", "dev-owner"], prog_name="oms", standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 - the system runs without it
        console.print(f"[yellow]warning: no developer owner for the dashboard ({exc})[/]")
        return None
    words = out.getvalue().strip().split()
    if len(words) != 2:
        return None
    return words[0], None if words[1] == "-" else words[1]


def config() -> None:
    """Print every configuration variable of every service: default, current value (secrets masked), meaning."""
    from shared.config import config_rows, current_values

    current = current_values()  # a wrong value: the readable message naming the variable
    table = Table("variable", "used by", "default", "current", "meaning")
    for service, var, default, desc in config_rows():
        table.add_row(var, service, default, current.get(var, ""), desc)
    console.print(table)
