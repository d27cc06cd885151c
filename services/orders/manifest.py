"""The orders service, as the registry knows it (see ``shared.registry`` and docs/adding-a-service.md)."""

from __future__ import annotations

from pathlib import Path

from shared.registry import ServiceSpec

SERVICE = ServiceSpec(
    name="orders",
    nameko_class="services.orders.service:OrdersService",
    schema="orders",
    migrations=Path(__file__).parent / "migrations",
    backbone=True,
    contracts="services.orders.contracts",
    settings="services.orders.settings:OrdersSettings",
    docs={"stages": "services.orders.manifest:stages_table"},
)


def stages_table() -> str:
    """The README's stage table: every stage, what it means, and where it can move to."""
    from services.orders.contracts.stages import status_machine_table

    rows = ["| stage | meaning | can move to |", "|---|---|---|"]
    for s in status_machine_table()["stages"]:
        targets = ", ".join(f"`{t}`" for t in s["allowed"]) or "— (final)"
        rows.append(f"| `{s['stage']}` | {s['description']} | {targets} |")
    return "\n".join(rows)
