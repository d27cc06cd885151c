"""``oms fulfillment reconcile [--fix]``: the fulfillment service's own tool, run against its schema directly.

It recomputes every stock level's ``reserved`` from the reservations and reports the levels that differ
(drift); ``--fix`` sets them to the reservations' sum, each correction written as a movement. Exit code 1
when drift was found and not fixed, so a cron job or a probe can alert on it.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(name="fulfillment", help="Fulfillment tools (stock reconciliation).", no_args_is_help=True)
console = Console()


@app.callback()
def main() -> None:
    """Fulfillment tools."""


@app.command("reconcile")
def reconcile(fix: Annotated[bool, typer.Option("--fix", help="Set reserved to the reservations' sum.")] = False
              ) -> None:
    """Recompute reserved stock from the reservations and report drift (and fix it with --fix)."""
    from services.fulfillment.usecases.stock import reconcile as run
    from shared.config import get_settings
    from shared.db import Database

    db = Database(get_settings().database_url, "fulfillment", size=1)
    db.open()
    try:
        report = run(db, fix, {"type": "staff", "id": "cli", "name": "oms fulfillment reconcile"})
    finally:
        db.close()
    if not report.drift:
        console.print(f"checked {report.checked} stock level(s): no drift")
        return
    table = Table("sku", "location", "recorded reserved", "reservations")
    for d in report.drift:
        table.add_row(d.sku, d.location, str(d.recorded_reserved), str(d.reservations_total))
    console.print(table)
    console.print(f"checked {report.checked} stock level(s): {len(report.drift)} drifted"
                  + ("; fixed" if report.fixed else "; run with --fix to correct"))
    if not report.fixed:
        raise typer.Exit(1)
