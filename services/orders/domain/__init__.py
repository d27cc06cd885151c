"""The order's rules, with no I/O: what an order is, which moves are allowed, and what each change records.

Everything here is a pure function of (order, command, actor, now): it either returns the new order plus
the history entries and events to store, or raises a ``DomainError`` and changes nothing. The store loads
an ``Order``, the service calls one of these functions inside its transaction and saves the result with an
optimistic ``version`` check, writes the history entries and emits the events through the outbox.

* ``model``: the aggregate (``Order``, ``LineItem``, ``Totals``, ``StaffNote``) and ``HistoryRecord``, frozen
  domain values; neither the HTTP views nor the stored document (those are mapped in ``views``/``document``).
* ``machine``: the published stage table (``contracts.stages``) plus the rules it cannot express, and the
  automatic moves.
* ``changes``: placing an order and every edit (address, payment, customer, notes, payment reports).
* ``events``: each change mapped to the contract event it emits.
* ``fulfillment``: the stage following the fulfillment status (``STAGE_FOLLOWS``), the out-of-stock hold.

This package imports no I/O library (checked by the import contract in ``make test``).
"""

from __future__ import annotations

from services.orders.contracts.schemas import Stage
from services.orders.contracts.stages import (
    CANCELLABLE,
    FINAL,
    RESUMABLE_STAGES,
    SHIPPED_STAGES,
    STAGE_DESCRIPTIONS,
    STAGE_LABELS,
    TERMINAL,
    TRANSITIONS,
    status_machine_table,
)
from services.orders.domain.changes import (
    INITIAL_PAYMENT_STATUS,
    add_note,
    change_customer,
    delete_note,
    edit_note,
    new_order,
    project_payment,
    record,
    set_address,
    set_customer_note,
    set_payment_method,
)
from services.orders.domain.fulfillment import (
    FOLLOW_STAGES,
    OUT_OF_STOCK,
    STAGE_FOLLOWS,
    follow_fulfillment,
    hold_out_of_stock,
    project_fulfillment,
    stage_path,
)
from services.orders.domain.machine import (
    TIMER_ONLY,
    Outcome,
    TransitionResult,
    abandon,
    allowed_targets,
    apply_transition,
    auto_confirm,
    can_transition,
    check_version,
    is_abandonable,
    payment_known,
    should_auto_confirm,
    transition,
)
from services.orders.domain.model import (
    ABANDON_TIMER,
    AUTO_CONFIRM,
    FULFILLMENT,
    PAYMENTS,
    SYSTEM,
    HistoryRecord,
    LineItem,
    Order,
    StaffNote,
    Totals,
    compute_totals,
    display_number,
    order_number_from_search,
)

__all__ = [
    "ABANDON_TIMER",
    "AUTO_CONFIRM",
    "CANCELLABLE",
    "FINAL",
    "FOLLOW_STAGES",
    "FULFILLMENT",
    "INITIAL_PAYMENT_STATUS",
    "OUT_OF_STOCK",
    "PAYMENTS",
    "RESUMABLE_STAGES",
    "SHIPPED_STAGES",
    "STAGE_FOLLOWS",
    "STAGE_DESCRIPTIONS",
    "STAGE_LABELS",
    "SYSTEM",
    "TERMINAL",
    "TIMER_ONLY",
    "TRANSITIONS",
    "HistoryRecord",
    "LineItem",
    "Order",
    "Outcome",
    "Stage",
    "StaffNote",
    "Totals",
    "TransitionResult",
    "abandon",
    "add_note",
    "allowed_targets",
    "apply_transition",
    "auto_confirm",
    "can_transition",
    "change_customer",
    "check_version",
    "compute_totals",
    "delete_note",
    "display_number",
    "edit_note",
    "follow_fulfillment",
    "hold_out_of_stock",
    "is_abandonable",
    "new_order",
    "order_number_from_search",
    "payment_known",
    "project_fulfillment",
    "project_payment",
    "record",
    "set_address",
    "set_customer_note",
    "set_payment_method",
    "should_auto_confirm",
    "stage_path",
    "status_machine_table",
    "transition",
]
