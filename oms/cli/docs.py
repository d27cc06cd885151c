"""``oms docs``: the README's generated tables (stage machine, payment status table, event catalog, configuration).

Each service contributes its own sections through its manifest (``docs``: marker -> function returning
markdown); the event catalog and the configuration table span the registry. The README embeds them between
``<!-- BEGIN x -->`` / ``<!-- END x -->`` markers; ``oms docs --write`` refreshes them and a unit test fails
when the README and the code disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def events_table() -> str:
    from shared.catalog import load_all

    rows = ["| type (routing key) | published by | when |", "|---|---|---|"]
    for event_type, entry in sorted(load_all().items(), key=lambda kv: (kv[1].service, kv[0])):
        rows.append(f"| `{event_type}` | {entry.service} | {entry.description} |")
    return "\n".join(rows)


def config_table() -> str:
    from shared.config import config_rows

    rows = ["| variable | used by | default | meaning |", "|---|---|---|---|"]
    for service, var, default, desc in config_rows():
        rows.append(f"| `{var}` | {service} | `{default}` | {desc} |")
    return "\n".join(rows)


def sections() -> dict[str, Callable[[], str]]:
    """README marker -> table builder: the services' own sections (from their manifests), then the catalog's
    and the configuration's, which span every service."""
    from shared.registry import docs_sections, load

    built: dict[str, Callable[[], str]] = {marker: load(target) for marker, target in docs_sections().items()}
    built["events"] = events_table
    built["config"] = config_table
    return built


def render(text: str) -> str:
    for name, build in sections().items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", re.S)
        text = pattern.sub(lambda m, b=build: m.group(1) + b() + "\n" + m.group(2), text)  # type: ignore[misc]
    return text


def docs(write: Annotated[bool, typer.Option(help="Rewrite README.md's generated tables.")] = False) -> None:
    """Print (or write into README.md) the tables generated from the code."""
    if write:
        README.write_text(render(README.read_text()))
        typer.echo("README.md updated")
        return
    for name, build in sections().items():
        typer.echo(f"## {name}\n{build()}\n")
