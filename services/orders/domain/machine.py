"""The stage machine as the domain enforces it: the published table plus the rules a table cannot say.

``TRANSITIONS`` comes from the contract (``services.orders.contracts.stages``), the one table the README,
the dashboard and the API read too. Two rules are layered on top, each in one place: a held order resumes
only to the stage it was held from (``held_from``), and only the abandonment timer (a ``system`` actor)
moves an order to ``abandoned``. The automatic moves (confirm when complete, abandon when stale) live here
as well, and so do the guards every change shares (version check, archived, shipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from services.orders.contracts import events as ev
from services.orders.contracts.schemas import MANUAL_PAYMENT_METHODS, Actor, Stage, Transition
from services.orders.contracts.stages import FINAL, RESUMABLE_STAGES, SHIPPED_STAGES, TRANSITIONS
from services.orders.domain import events
from services.orders.domain.model import ABANDON_TIMER, AUTO_CONFIRM, HistoryRecord, Order, StaffNote
from shared.errors import IllegalTransition, InvalidRequest, NotAllowedInThisState, VersionConflict, field_error

S = Stage

TIMER_ONLY: frozenset[Stage] = frozenset({S.abandoned})
"""Targets only the system (the abandonment timer) may choose; a person never abandons an order by hand."""


def _check_layered_rules() -> None:
    """The domain's own rules must fit the published table (fail at import, even under ``python -O``)."""
    if not all(any(t in targets for targets in TRANSITIONS.values()) for t in TIMER_ONLY):
        raise AssertionError("orders.domain.TIMER_ONLY names a stage no row of TRANSITIONS reaches")


_check_layered_rules()


@dataclass(frozen=True)
class Outcome:
    """What a change did: the new order, the fields that changed, the history to append, the events to emit.

    ``changes`` maps ``Order`` field names to their new values (always including ``version``,
    ``updated_at`` and ``history_seq`` when anything changed). An empty ``changes`` means the request
    repeated the current state: nothing to save, nothing to emit (safe retries).
    """

    order: Order
    changes: dict[str, Any] = field(default_factory=dict)
    history: list[HistoryRecord] = field(default_factory=list)
    events: list[ev.OrderEvent] = field(default_factory=list)
    note: StaffNote | None = None
    """For note changes: the note as it must now be stored."""

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class TransitionResult(NamedTuple):
    """``(new_state, history_entry, event)`` of a stage move; unpack it like a tuple."""

    order: Order
    history_entry: HistoryRecord
    event: ev.OrderStageChanged

    @property
    def changes(self) -> dict[str, Any]:
        """The ``Order`` fields a stage move changes, with their new values."""
        return {name: getattr(self.order, name) for name in _TRANSITION_FIELDS}

    def as_outcome(self) -> Outcome:
        return Outcome(self.order, self.changes, [self.history_entry], [self.event])


_TRANSITION_FIELDS = ("stage", "held_from", "stage_changed_at", "updated_at", "version", "history_seq")


# --------------------------------------------------------------------------------------------------------
# Guards: wrong requests change nothing and say why
# --------------------------------------------------------------------------------------------------------


def ids(order: Order) -> dict[str, Any]:
    """What every error about an order names: its id, number and stage."""
    return {"order_id": str(order.id), "number": order.number, "stage": order.stage.value}


def _stage_phrase(order: Order) -> str:
    if order.stage == S.on_hold and order.held_from is not None:
        return f"on_hold (held from {order.held_from.value})"
    return order.stage.value


def check_version(order: Order, expected_version: int | None) -> None:
    """Refuse a change made on a stale copy of the order (someone else changed it meanwhile)."""
    if expected_version is not None and expected_version != order.version:
        raise VersionConflict(
            f"Order {order.display_number} is at version {order.version}, not {expected_version}: "
            "it was changed meanwhile; reload it and try again.",
            **ids(order),
            expected_version=expected_version,
            current_version=order.version,
        )


def refuse_if_archived(order: Order, what: str) -> None:
    """An archived order is closed: no edit of any kind (409, the request itself may be fine)."""
    if order.stage == S.archived:
        raise NotAllowedInThisState(
            f"Order {order.display_number} is archived; {what} is not possible on an archived order "
            "(it is closed and kept for records).",
            **ids(order),
        )


def refuse_if_shipped(order: Order, what: str) -> None:
    """Once shipped, what was shipped (address, customer) cannot change (409)."""
    refuse_if_archived(order, what)
    if order.stage in SHIPPED_STAGES:
        raise NotAllowedInThisState(
            f"Order {order.display_number} is {order.stage.value}; {what} is only possible before shipping.",
            **ids(order),
        )


# --------------------------------------------------------------------------------------------------------
# Stage moves
# --------------------------------------------------------------------------------------------------------


def _as_stage(order: Order, to: Stage | str) -> Stage:
    try:
        return Stage(to)
    except ValueError:
        raise InvalidRequest(
            f"{to!r} is not a stage; stages are: {', '.join(s.value for s in Stage)}.",
            **ids(order),
            errors=[field_error("to", "unknown stage", "unknown_stage")],
        ) from None


def allowed_targets(order: Order, actor: Actor | None = None) -> list[Stage]:
    """The stages this order can move to now, in the order stages are listed.

    The table, narrowed by the two rules it cannot express: a held order resumes only to ``held_from``;
    ``abandoned`` is only for a ``system`` actor (without an actor, the answer is what a person may choose).
    """
    targets = TRANSITIONS[order.stage]
    if order.stage == S.on_hold:
        targets = frozenset(t for t in targets if t not in RESUMABLE_STAGES or t == order.held_from)
    if actor is None or actor.type != "system":
        targets = targets - TIMER_ONLY
    return [s for s in Stage if s in targets]


def can_transition(order: Order, to: Stage | str, actor: Actor | None = None) -> bool:
    """Whether ``transition(order, to, actor, ...)`` would succeed (ignoring the version check)."""
    try:
        stage = Stage(to)
    except ValueError:
        return False
    return stage in allowed_targets(order, actor)


def _why_not(order: Order, to: Stage, actor: Actor | None) -> str:
    if to == order.stage:
        return f"it is already {to.value}"
    if order.stage in FINAL:
        return f"{order.stage.value} is final"
    if to == S.cancelled and order.stage in SHIPPED_STAGES:
        return "orders can only be cancelled before shipping"
    if order.stage == S.on_hold and to in RESUMABLE_STAGES:
        held = order.held_from.value if order.held_from else "unknown"
        return f"a held order resumes only to the stage it was held from ({held})"
    if to in TIMER_ONLY and to in TRANSITIONS[order.stage]:
        return "only the abandonment timer moves an order to abandoned"
    return f"{order.stage.value} cannot move to {to.value}"


def transition(
    order: Order,
    to: Stage | str,
    actor: Actor,
    reason: str | None,
    now: datetime,
    expected_version: int | None = None,
) -> TransitionResult:
    """Move the order to ``to``, recording who, why and when.

    Raises ``VersionConflict`` if ``expected_version`` is given and stale, ``IllegalTransition`` (naming
    the order, its stage and the allowed targets) if the move is not allowed.
    """
    target = _as_stage(order, to)
    check_version(order, expected_version)
    allowed = allowed_targets(order, actor)
    if target not in allowed:
        can = ", ".join(s.value for s in allowed) or f"nothing ({order.stage.value} is final)"
        raise IllegalTransition(
            f"Order {order.display_number} is {_stage_phrase(order)}; it can move to: {can}. "
            f"It cannot move to {target.value}: {_why_not(order, target, actor)}.",
            **ids(order),
            allowed=[s.value for s in allowed],
            requested=target.value,
            held_from=order.held_from.value if order.held_from else None,
        )
    held_from = order.stage if target == S.on_hold else None
    seq = order.history_seq + 1
    version = order.version + 1
    new = replace(
        order,
        stage=target,
        held_from=held_from,
        stage_changed_at=now,
        updated_at=now,
        version=version,
        history_seq=seq,
    )
    data: dict[str, Any] = {"version": version}
    if held_from is not None:
        data["held_from"] = held_from.value
    entry = HistoryRecord(
        seq=seq,
        at=now,
        actor=actor,
        action="stage_changed",
        from_stage=order.stage,
        to_stage=target,
        reason=reason,
        data=data,
    )
    return TransitionResult(new, entry, events.stage_changed(new, order.stage, actor, now, reason))


def apply_transition(order: Order, cmd: Transition, actor: Actor, now: datetime) -> TransitionResult:
    """``transition`` driven by a ``Transition`` command (the RPC/HTTP body)."""
    return transition(order, cmd.to, actor, cmd.reason, now, expected_version=cmd.expected_version)


# --------------------------------------------------------------------------------------------------------
# Automatic moves
# --------------------------------------------------------------------------------------------------------


def payment_known(order: Order) -> bool:
    """Paid, authorized in full (captured later), or a manual method (cash/POS on delivery, bank transfer)
    chosen: the order can go ahead."""
    return order.paid or order.payment_authorized or order.payment_method in MANUAL_PAYMENT_METHODS


def should_auto_confirm(order: Order) -> bool:
    """placed -> confirmed once address and payment are known and the customer added or skipped a note."""
    return (
        order.stage == S.placed
        and order.shipping_address is not None
        and payment_known(order)
        and (order.customer_note is not None or order.customer_note_skipped)
    )


def auto_confirm(order: Order, now: datetime) -> TransitionResult | None:
    """Confirm the order if ``should_auto_confirm``; the service calls this after every customer change."""
    if not should_auto_confirm(order):
        return None
    return transition(order, S.confirmed, AUTO_CONFIRM, "address, payment and note received", now)


def _as_timedelta(value: timedelta | float) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


def is_abandonable(order: Order, now: datetime, abandon_after: timedelta | float) -> bool:
    """A placed order still missing its address or payment ``abandon_after`` (seconds) after it was placed.

    The clock runs from when the order entered ``placed`` (``stage_changed_at``), so an order put on hold
    and resumed gets a fresh period, and an imported order is not abandoned for its old ``placed_at``.
    The store's timer query must select with the same condition.
    """
    return (
        order.stage == S.placed
        and (order.shipping_address is None or not payment_known(order))
        and now - order.stage_changed_at >= _as_timedelta(abandon_after)
    )


def abandon(order: Order, now: datetime, abandon_after: timedelta | float) -> TransitionResult:
    """The abandonment timer's move; re-checks the rule because the customer may have acted meanwhile."""
    if not is_abandonable(order, now, abandon_after):
        raise IllegalTransition(
            f"Order {order.display_number} is {_stage_phrase(order)} and not abandonable: it is not a placed "
            f"order missing its address or payment for {_as_timedelta(abandon_after)}.",
            **ids(order),
            allowed=[s.value for s in allowed_targets(order)],
            requested=S.abandoned.value,
        )
    return transition(order, S.abandoned, ABANDON_TIMER, "no address or payment in time", now)
