"""The fulfillment service, as the registry knows it (see ``shared.registry`` and docs/adding-a-service.md).

Its README sections are the two tables of ``contracts.vocabulary`` (the fulfillment rules and the shipment
status machine); its ``oms fulfillment`` commands are the service's own tools (``reconcile``). Besides the Nameko
service it declares the sandbox carrier, a development-only process that ``oms run`` starts so carrier
fulfilment works on a developer machine (compose runs it as ``sandbox-carrier``).
"""

from __future__ import annotations

from pathlib import Path

from shared.registry import Process, ServiceSpec

SERVICE = ServiceSpec(
    name="fulfillment",
    nameko_class="services.fulfillment.service:FulfillmentService",
    schema="fulfillment",
    migrations=Path(__file__).parent / "migrations",
    backbone=True,
    contracts="services.fulfillment.contracts",
    settings="services.fulfillment.settings:FulfillmentSettings",
    docs={
        "fulfillment-status": "services.fulfillment.manifest:fulfillment_status_table",
        "shipment-status": "services.fulfillment.manifest:shipment_status_table",
    },
    cli="services.fulfillment.cli:app",
    processes=(
        Process(
            "sandbox-carrier",
            ("-m", "services.fulfillment.carrier.sandbox"),
            development_only=True,
            settings="services.fulfillment.carrier.settings:CarrierSandboxSettings",
        ),
    ),
)

_LEVEL = {"none": "none", "some": "some", "all": "all"}


def fulfillment_status_table() -> str:
    """The README's fulfillment status table: FULFILLMENT_RULES, first matching row wins."""
    from services.fulfillment.contracts.vocabulary import FULFILLMENT_DESCRIPTIONS, FULFILLMENT_RULES

    def flag(value: bool | None) -> str:
        return "" if value is None else ("yes" if value else "no")

    rows = ["| # | status | order cancelled | units returned | units delivered | units handed over | packed "
            "| all collected in store | meaning |",
            "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(FULFILLMENT_RULES, 1):
        rows.append(
            f"| {i} | `{r.status.value}` | {flag(r.order_cancelled)} | {_LEVEL.get(r.returned, '')} "
            f"| {_LEVEL.get(r.delivered, '')} | {_LEVEL.get(r.handed_over, '')} | {flag(r.packed)} "
            f"| {flag(r.pickup_only)} | {FULFILLMENT_DESCRIPTIONS[r.status]} ({r.why}) |"
        )
    return "\n".join(rows)


def shipment_status_table() -> str:
    """The README's shipment status table: the forward-only machine (SHIPMENT_TRANSITIONS)."""
    from services.fulfillment.contracts.vocabulary import (
        CANCELLABLE_SHIPMENT,
        SHIPMENT_DESCRIPTIONS,
        SHIPMENT_TRANSITIONS,
        ShipmentStatus,
    )

    rows = ["| status | may move to | can be cancelled | meaning |", "|---|---|---|---|"]
    for s in ShipmentStatus:
        moves = ", ".join(f"`{t.value}`" for t in ShipmentStatus if t in SHIPMENT_TRANSITIONS[s]) or "(final)"
        rows.append(f"| `{s.value}` | {moves} | {'yes' if s in CANCELLABLE_SHIPMENT else 'no'} "
                    f"| {SHIPMENT_DESCRIPTIONS[s]} |")
    return "\n".join(rows)
