"""``oms docs``: the README's generated tables (stage machine, payment status table, event catalog, configuration).

The README embeds these between ``<!-- BEGIN x -->`` / ``<!-- END x -->`` markers; ``oms docs --write``
refreshes them and a unit test fails when the README and the code disagree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def stages_table() -> str:
    from services.orders.contracts.stages import status_machine_table

    rows = ["| stage | meaning | can move to |", "|---|---|---|"]
    for s in status_machine_table()["stages"]:
        targets = ", ".join(f"`{t}`" for t in s["allowed"]) or "— (final)"
        rows.append(f"| `{s['stage']}` | {s['description']} | {targets} |")
    return "\n".join(rows)


def payment_status_table() -> str:
    from services.payments.domain import STATUS_TABLE, CaptureLevel, RefundLevel

    received = {CaptureLevel.NONE: "nothing", CaptureLevel.PARTIAL: "part of the total",
                CaptureLevel.FULL: "the total (or more)"}
    refunded = {RefundLevel.NONE: "nothing", RefundLevel.EXCESS_ONLY: "only an over-payment",
                RefundLevel.PARTIAL: "part", RefundLevel.FULL: "all of it"}
    rows = ["| money received | refunded | a card payment in progress | payment status |", "|---|---|---|---|"]
    for (capture, refund, busy), status in STATUS_TABLE.items():
        rows.append(f"| {received[capture]} | {refunded[refund]} | {'yes' if busy else 'no'} | `{status.value}` |")
    return "\n".join(rows)


def events_table() -> str:
    from shared.catalog import load_all

    rows = ["| type (routing key) | published by | when |", "|---|---|---|"]
    for event_type, entry in sorted(load_all().items(), key=lambda kv: (kv[1].service != "orders", kv[0])):
        rows.append(f"| `{event_type}` | {entry.service} | {entry.description} |")
    return "\n".join(rows)


def config_table() -> str:
    from services.gateway.settings import GatewaySettings  # until the registry lists every service's settings
    from services.orders.settings import OrdersSettings
    from services.payments.settings import PaymentsSettings, SandboxSettings
    from shared.config import settings_table

    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for var, default, desc in settings_table(GatewaySettings, OrdersSettings, PaymentsSettings, SandboxSettings):
        rows.append(f"| `{var}` | `{default}` | {desc} |")
    return "\n".join(rows)


SECTIONS = {
    "stages": stages_table,
    "payment-status": payment_status_table,
    "events": events_table,
    "config": config_table,
}


def render(text: str) -> str:
    for name, build in SECTIONS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", re.S)
        text = pattern.sub(lambda m, b=build: m.group(1) + b() + "\n" + m.group(2), text)  # type: ignore[misc]
    return text


def docs(write: Annotated[bool, typer.Option(help="Rewrite README.md's generated tables.")] = False) -> None:
    """Print (or write into README.md) the tables generated from the code."""
    if write:
        README.write_text(render(README.read_text()))
        typer.echo("README.md updated")
        return
    for name, build in SECTIONS.items():
        typer.echo(f"## {name}\n{build()}\n")
