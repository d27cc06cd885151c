"""The published stage machine: which stage may follow which, in the merchant's words.

This is ONE table, ``TRANSITIONS``, and it lives in the contract because other parts read it: the gateway's
``GET /stages``, the README (``oms docs``) and the dashboard get ``status_machine_table()`` from here, and the
orders domain enforces exactly this table. The domain layers on top the rules a (from, to) pair cannot
express (a held order resumes only to the stage it was held from; only the abandonment timer abandons),
so the documented rules cannot drift from the enforced ones.
"""

from __future__ import annotations

from typing import Any

from services.orders.contracts.schemas import Stage

S = Stage

TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    S.placed: frozenset({S.confirmed, S.abandoned, S.on_hold, S.rejected, S.cancelled}),
    S.abandoned: frozenset({S.archived}),
    S.confirmed: frozenset({S.approved, S.on_hold, S.rejected, S.cancelled}),
    # Resuming is further narrowed to the stage the order was held from (see the domain's ``allowed_targets``).
    S.on_hold: frozenset({S.placed, S.confirmed, S.approved, S.processed, S.rejected, S.cancelled}),
    S.rejected: frozenset({S.archived}),
    S.cancelled: frozenset({S.archived}),
    S.approved: frozenset({S.processed, S.on_hold, S.cancelled}),
    S.processed: frozenset({S.shipped, S.on_hold, S.cancelled}),
    S.shipped: frozenset({S.delivered}),
    S.delivered: frozenset({S.returned, S.archived}),
    S.returned: frozenset({S.archived}),
    S.archived: frozenset(),
}
"""Stage -> the stages an order in it may move to. The single source of truth for every stage rule."""

RESUMABLE_STAGES: frozenset[Stage] = frozenset(s for s, targets in TRANSITIONS.items() if S.on_hold in targets)
"""Stages an order can be put on hold from, and so the only stages a held order can resume to."""

TERMINAL: frozenset[Stage] = frozenset(s for s, targets in TRANSITIONS.items() if targets <= {S.archived})
"""Stages where the order's story is over: nothing but archiving remains (and for ``archived`` not even that)."""

FINAL: frozenset[Stage] = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
"""Stages with no way out (``archived``)."""

SHIPPED_STAGES: frozenset[Stage] = frozenset({S.shipped, S.delivered, S.returned})
"""Once the parcel has left, the address, the customer and the payment method are history, not settings."""

CANCELLABLE: frozenset[Stage] = frozenset(s for s, targets in TRANSITIONS.items() if S.cancelled in targets)
"""Stages an order can still be cancelled from (all before shipping)."""

STAGE_LABELS: dict[Stage, str] = {
    S.placed: "Placed",
    S.abandoned: "Abandoned",
    S.confirmed: "Confirmed",
    S.on_hold: "On Hold",
    S.rejected: "Rejected",
    S.cancelled: "Cancelled",
    S.approved: "Approved",
    S.processed: "Processed",
    S.shipped: "Shipped",
    S.delivered: "Delivered",
    S.returned: "Returned",
    S.archived: "Archived",
}

STAGE_DESCRIPTIONS: dict[Stage, str] = {
    S.placed: "Cart received from customer (awaiting payment/address).",
    S.abandoned: "Cart submitted but no payment/address provided (auto-moved after timeout).",
    S.confirmed: "Payment method & address received; order is valid.",
    S.on_hold: "Order paused for manual review or after-hours handling.",
    S.rejected: "Order declined by admin (e.g., out of stock or unserviceable).",
    S.cancelled: "Order cancelled by customer/admin before shipping.",
    S.approved: "Admin verified & cleared for fulfillment.",
    S.processed: "Order prepared/packed; ready for shipment.",
    S.shipped: "Order dispatched to logistics partner and shipped (tracking shared).",
    S.delivered: "Order successfully delivered to customer.",
    S.returned: "Order returned by the customer after delivery.",
    S.archived: "Order closed and stored for records.",
}
"""One line per stage, in the merchant's words (the help-center page on order stages)."""


def _check_table() -> None:
    """Fail at import (even under ``python -O``) if the table contradicts the rules it is meant to encode."""
    archivable = {s for s, targets in TRANSITIONS.items() if S.archived in targets}
    checks = {
        "every stage needs a row": set(TRANSITIONS) == set(Stage),
        "no stage moves to itself": all(s not in targets for s, targets in TRANSITIONS.items()),
        "a held order must be able to resume": TRANSITIONS[S.on_hold] >= RESUMABLE_STAGES,
        "cancel only before shipping": not (CANCELLABLE & (SHIPPED_STAGES | {S.archived})),
        "archived is final": TRANSITIONS[S.archived] == frozenset(),
        "abandoned only from placed": [s for s, t in TRANSITIONS.items() if S.abandoned in t] == [S.placed],
        "closed orders can be archived": archivable == {S.abandoned, S.rejected, S.cancelled, S.delivered, S.returned},
        "every stage is described": set(STAGE_LABELS) == set(STAGE_DESCRIPTIONS) == set(Stage),
    }
    broken = [rule for rule, ok in checks.items() if not ok]
    if broken:
        raise AssertionError(f"orders.contracts.stages.TRANSITIONS breaks: {', '.join(broken)}")


_check_table()


def status_machine_table() -> dict[str, Any]:
    """The stage machine as JSON for the README, the dashboard and ``GET /stages``, read from the table."""
    return {
        "stages": [
            {
                "stage": stage.value,
                "label": STAGE_LABELS[stage],
                "description": STAGE_DESCRIPTIONS[stage],
                "allowed": [t.value for t in Stage if t in TRANSITIONS[stage]],
                "can_hold": stage in RESUMABLE_STAGES,
                "cancellable": stage in CANCELLABLE,
                "terminal": stage in TERMINAL,
                "final": stage in FINAL,
            }
            for stage in Stage
        ],
        "automatic": [
            {
                "from": S.placed.value,
                "to": S.abandoned.value,
                "rule": "after the configured time (OMS_ABANDON_AFTER_SECONDS) without an address or payment",
            },
            {
                "from": S.placed.value,
                "to": S.confirmed.value,
                "rule": "once the address and the payment (paid, or cash/POS on delivery or bank transfer) "
                "are known and the customer added or skipped a note",
            },
        ],
        "rules": [
            "An order on hold resumes only to the stage it was held from "
            f"({', '.join(s.value for s in Stage if s in RESUMABLE_STAGES)}).",
            "Orders can only be cancelled before shipping.",
            "Only the abandonment timer moves an order to abandoned, and only from placed.",
            "Archived is final; abandoned, rejected, cancelled, delivered and returned orders can be archived.",
            "The address, customer and payment method cannot change once the order has shipped.",
            "Every move records who made it, why and when in the order's history.",
        ],
    }


__all__ = [
    "CANCELLABLE",
    "FINAL",
    "RESUMABLE_STAGES",
    "SHIPPED_STAGES",
    "STAGE_DESCRIPTIONS",
    "STAGE_LABELS",
    "TERMINAL",
    "TRANSITIONS",
    "Stage",
    "status_machine_table",
]
