"""The order follows its fulfillment: what the fulfillment service's reports do to the order's stage.

Fulfillment owns the fulfillment status (computed from shipments and quantities); orders keep a copy of it and
of the shipments (the projection: list filter and sort, the order page) and move the order's stage after it:

* ``STAGE_FOLLOWS``: fulfillment status -> the stage it leads the order to (``None``: no stage move). The
  partial statuses move nothing: a partially fulfilled order stays approved/processed until everything went,
  a partially returned one stays delivered until everything came back.
* The order moves only forward along ``FOLLOW_STAGES``, through every stage ``TRANSITIONS`` requires in between
  (approved -> processed -> shipped on ``fulfilled``), each move its own history entry and ``order.stage_changed``
  event by the ``FULFILLMENT`` actor, so payments capture at the configured stage as for a move by staff.
* An order on hold is not moved; nor is one that cannot reach the stage (cancelled, archived...): the history
  records what fulfillment reported and why the stage stayed (``fulfillment_not_followed``).
* ``fulfillment.out_of_stock``: the order goes on hold with reason ``out_of_stock`` when its stage allows it,
  else the history records the shortage (``out_of_stock``).

Pure: no I/O, like the rest of the domain.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from services.fulfillment.contracts.vocabulary import FulfillmentStatus
from services.orders.contracts.schemas import Stage
from services.orders.contracts.stages import TRANSITIONS
from services.orders.domain.changes import record
from services.orders.domain.machine import Outcome, can_transition, transition
from services.orders.domain.model import FULFILLMENT, HistoryRecord, Order

F = FulfillmentStatus
S = Stage

STAGE_FOLLOWS: dict[FulfillmentStatus, Stage | None] = {
    F.unfulfilled: None,
    F.dispatched: S.processed,
    F.partially_fulfilled: None,
    F.fulfilled: S.shipped,
    F.delivered: S.delivered,
    F.picked_up: S.delivered,
    F.partially_returned: None,
    F.returned: S.returned,
    F.canceled: None,
}
"""Fulfillment status -> the stage the order follows to (``None``: the stage stays where it is)."""

FOLLOW_STAGES: tuple[Stage, ...] = (S.approved, S.processed, S.shipped, S.delivered, S.returned)
"""The stages fulfillment moves an order through, in order. It never moves an order into ``approved`` (a staff
decision) nor backwards; only an order already in one of these stages follows."""

OUT_OF_STOCK = "out_of_stock"
"""The hold reason (and history action) of an order fulfillment could not reserve stock for."""


def _check_table() -> None:
    checks = {
        "every fulfillment status has a row": set(STAGE_FOLLOWS) == set(FulfillmentStatus),
        "fulfillment leads only to its own stages": all(
            s is None or s in FOLLOW_STAGES[1:] for s in STAGE_FOLLOWS.values()
        ),
        "every followed stage is reachable from approved": all(
            s is None or stage_path(S.approved, s) is not None for s in STAGE_FOLLOWS.values()
        ),
    }
    broken = [rule for rule, ok in checks.items() if not ok]
    if broken:
        raise AssertionError(f"orders.domain.fulfillment.STAGE_FOLLOWS breaks: {', '.join(broken)}")


def stage_path(from_stage: Stage, to_stage: Stage) -> list[Stage] | None:
    """The moves from ``from_stage`` to ``to_stage`` through ``TRANSITIONS`` using only ``FOLLOW_STAGES`` (the
    shortest way; ``[]`` when already there), or ``None`` when ``TRANSITIONS`` allows no such way."""
    if from_stage == to_stage:
        return []
    if from_stage not in FOLLOW_STAGES:
        return None
    came_from: dict[Stage, Stage] = {from_stage: from_stage}
    queue = deque([from_stage])
    while queue:
        stage = queue.popleft()
        for nxt in (s for s in FOLLOW_STAGES if s in TRANSITIONS[stage] and s not in came_from):
            came_from[nxt] = stage
            if nxt == to_stage:
                path = [nxt]
                while came_from[path[-1]] != from_stage:
                    path.append(came_from[path[-1]])
                return path[::-1]
            queue.append(nxt)
    return None


def _already_there(stage: Stage, target: Stage) -> bool:
    """The order is at or past ``target`` on the fulfillment path (a late or repeated report)."""
    return stage in FOLLOW_STAGES and FOLLOW_STAGES.index(stage) >= FOLLOW_STAGES.index(target)


def project_fulfillment(
    order: Order, status: FulfillmentStatus, shipments: Sequence[Mapping[str, Any]]
) -> Order:
    """The order's copy of its fulfillment status and shipments. Not a change of the order by itself."""
    return replace(order, fulfillment_status=FulfillmentStatus(status), shipments=tuple(dict(s) for s in shipments))


def follow_fulfillment(
    order: Order,
    from_status: FulfillmentStatus,
    status: FulfillmentStatus,
    shipments: Sequence[Mapping[str, Any]],
    now: datetime,
) -> tuple[Order, Outcome | None]:
    """The projected order and, when the stage moves or the history must say why it did not, the outcome to save.

    ``(projected, None)``: only the projection changed (a partial status, or the order is already there).
    """
    projected = project_fulfillment(order, status, shipments)
    target = STAGE_FOLLOWS[FulfillmentStatus(status)]
    if target is None or _already_there(order.stage, target):
        return projected, None
    report = {"fulfillment_status": status.value, "from_fulfillment_status": from_status.value,
              "would_move_to": target.value}
    if order.stage == S.on_hold:
        if order.held_from is not None and _already_there(order.held_from, target):
            return projected, None
        held = order.held_from.value if order.held_from else "unknown"
        why = f"fulfillment is {status.value}; the order is on hold (from {held}) and stays on hold"
        return projected, record(projected, FULFILLMENT, now, "fulfillment_not_followed", why, report)
    path = stage_path(order.stage, target)
    if path is None:
        why = f"fulfillment is {status.value}; a {order.stage.value} order cannot move to {target.value}"
        return projected, record(projected, FULFILLMENT, now, "fulfillment_not_followed", why, report)
    reason = f"fulfillment {status.value}"
    current = projected
    changes: dict[str, Any] = {}
    history: list[HistoryRecord] = []
    events: list[Any] = []
    for stage in path:
        moved = transition(current, stage, FULFILLMENT, reason, now)
        current = moved.order
        changes.update(moved.changes)
        history.append(moved.history_entry)
        events.append(moved.event)
    return projected, Outcome(current, changes, history, events)


def hold_out_of_stock(order: Order, lines: Sequence[Mapping[str, Any]], now: datetime) -> Outcome:
    """Fulfillment could not reserve the order's stock: on hold with reason ``out_of_stock`` when its stage
    allows a hold, else the shortage is recorded in the history (staff decide: restock and retry, or reject)."""
    short = [dict(line) for line in lines]
    if can_transition(order, S.on_hold, FULFILLMENT):
        moved = transition(order, S.on_hold, FULFILLMENT, OUT_OF_STOCK, now)
        entry = replace(moved.history_entry, data={**moved.history_entry.data, "lines": short})
        return Outcome(moved.order, moved.changes, [entry], [moved.event])
    why = f"out of stock; a {order.stage.value} order cannot be put on hold"
    return record(order, FULFILLMENT, now, OUT_OF_STOCK, why, {"lines": short})


_check_table()
