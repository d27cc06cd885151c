"""The order's rules, with no I/O: what an order is, which moves are allowed, and what each change records.

Everything here is a pure function of (order, command, actor, now): it either returns the new order plus
the history entries and events to store, or raises a ``DomainError`` and changes nothing. The store loads
an ``Order``, calls one of these functions inside its transaction, saves the result with an optimistic
``version`` check, writes the history entries and emits the events through the outbox.

The stage machine is ONE table, ``TRANSITIONS``. The code here, ``status_machine_table()`` (README,
dashboard, API) and the tests all read it, so the documented rules cannot drift from the enforced ones.
A few rules cannot be expressed as plain (from, to) pairs and are layered on top of the table, each in
one place: a held order resumes only to the stage it was held from (``held_from``), and only the
abandonment timer (a ``system`` actor) moves an order to ``abandoned``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from services.orders.contracts import events as ev
from services.orders.contracts.schemas import (
    MANUAL_PAYMENT_METHODS,
    Actor,
    AddNote,
    Address,
    ChangeCustomer,
    Channel,
    Customer,
    EditNote,
    HistoryEntry,
    LineItemView,
    NoteView,
    OrderDetail,
    OrderSummary,
    PaymentMethodChoice,
    PlaceOrder,
    SetAddress,
    SetCustomerNote,
    SetPaymentMethod,
    Stage,
    Totals,
    Transition,
)
from shared.errors import IllegalTransition, InvalidRequest, NotFound, VersionConflict
from shared.money import fits, minor_unit, quantize

S = Stage

# --------------------------------------------------------------------------------------------------------
# The stage machine: the one table
# --------------------------------------------------------------------------------------------------------

TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    S.placed: frozenset({S.confirmed, S.abandoned, S.on_hold, S.rejected, S.cancelled}),
    S.abandoned: frozenset({S.archived}),
    S.confirmed: frozenset({S.approved, S.on_hold, S.rejected, S.cancelled}),
    # Resuming is further narrowed to the stage the order was held from (see ``allowed_targets``).
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

TIMER_ONLY: frozenset[Stage] = frozenset({S.abandoned})
"""Targets only the system (the abandonment timer) may choose; a person never abandons an order by hand."""

SHIPPED_STAGES: frozenset[Stage] = frozenset({S.shipped, S.delivered, S.returned})
"""Once the parcel has left, the address, the customer and the payment method are history, not settings."""

CANCELLABLE: frozenset[Stage] = frozenset(s for s, targets in TRANSITIONS.items() if S.cancelled in targets)

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
        raise AssertionError(f"orders.domain.TRANSITIONS breaks: {', '.join(broken)}")


_check_table()


# --------------------------------------------------------------------------------------------------------
# Money
# --------------------------------------------------------------------------------------------------------

def compute_totals(
    items: Sequence[tuple[int, Decimal]], currency: str, shipping: Decimal, discount: Decimal, tax: Decimal
) -> Totals:
    """subtotal = sum of quantity x unit price; total = subtotal + shipping + tax - discount. Exact.

    Exact because every input already fits the currency (checked in ``new_order``), so quantizing only adds
    trailing zeros and never rounds.
    """
    with localcontext() as ctx:
        ctx.prec = 50
        subtotal = sum((Decimal(qty) * price for qty, price in items), Decimal(0))
        total = subtotal + shipping + tax - discount
    return Totals(
        subtotal=quantize(subtotal, currency),
        shipping=quantize(shipping, currency),
        discount=quantize(discount, currency),
        tax=quantize(tax, currency),
        total=quantize(total, currency),
    )


# --------------------------------------------------------------------------------------------------------
# The order
# --------------------------------------------------------------------------------------------------------


class StaffNote(BaseModel):
    """A note the team keeps on an order. Deleting only hides it: the audit trail keeps every version."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: UUID
    text: str
    author: Actor
    created_at: datetime
    updated_at: datetime
    updated_by: Actor | None = None
    deleted: bool = False
    deleted_at: datetime | None = None
    deleted_by: Actor | None = None


class Order(BaseModel):
    """The order as the store loads and saves it (``model_validate(row)`` / ``model_dump(mode="json")``).

    Treat it as immutable: every domain function returns a new ``Order``. ``version`` goes up by one with
    every change (the store's optimistic-concurrency check); ``history_seq`` is the ``seq`` of the last
    history entry, so entries are numbered without reading the history back.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: UUID
    number: int
    channel: Channel
    stage: Stage = S.placed
    held_from: Stage | None = None
    customer: Customer
    items: list[LineItemView]
    currency: str
    totals: Totals
    shipping_address: Address | None = None
    payment_method: PaymentMethodChoice | None = None
    paid_at: datetime | None = None
    payment_status: str | None = None
    # The card is authorized for what is due, to be captured later (authorize-then-capture): as good as
    # paid for going ahead, not for the books.
    payment_authorized: bool = False
    customer_note: str | None = None
    customer_note_skipped: bool = False
    notes: list[StaffNote] = Field(default_factory=list)
    test: bool = False
    external_ref: str | None = None
    placed_at: datetime
    stage_changed_at: datetime
    created_at: datetime
    updated_at: datetime
    version: int = 1
    history_seq: int = 0

    @property
    def display_number(self) -> str:
        return display_number(self.number)

    @property
    def paid(self) -> bool:
        return self.paid_at is not None

    @property
    def item_count(self) -> int:
        return sum(item.quantity for item in self.items)


@dataclass(frozen=True)
class Outcome:
    """What a change did: the new order, the fields that changed, the history to append, the events to emit.

    ``changes`` maps ``Order`` field names to their new values (always including ``version``,
    ``updated_at`` and ``history_seq`` when anything changed). An empty ``changes`` means the request
    repeated the current state: nothing to save, nothing to emit (safe retries).
    """

    order: Order
    changes: dict[str, Any] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    events: list[ev.OrderEvent] = field(default_factory=list)
    note: StaffNote | None = None
    """For note changes: the note as it must now be stored."""

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class TransitionResult(NamedTuple):
    """``(new_state, history_entry, event)`` of a stage move; unpack it like a tuple."""

    order: Order
    history_entry: HistoryEntry
    event: ev.OrderStageChanged

    @property
    def changes(self) -> dict[str, Any]:
        """The ``Order`` fields a stage move changes, with their new values."""
        return {name: getattr(self.order, name) for name in _TRANSITION_FIELDS}

    def as_outcome(self) -> Outcome:
        return Outcome(self.order, self.changes, [self.history_entry], [self.event])


_TRANSITION_FIELDS = ("stage", "held_from", "stage_changed_at", "updated_at", "version", "history_seq")

SYSTEM = Actor(type="system", id="orders", name="Orders service")
ABANDON_TIMER = Actor(type="system", id="abandon-timer", name="Abandonment timer")
AUTO_CONFIRM = Actor(type="system", id="auto-confirm", name="Automatic confirmation")


def display_number(number: int) -> str:
    """How people say an order's number: ``#1001``."""
    return f"#{number}"


_NUMBER_QUERY = re.compile(r"^#?\s*(\d{1,18})$")


def order_number_from_search(q: str) -> int | None:
    """``"1001"`` or ``"#1001"`` -> 1001, so a search box finds an order by the number people quote."""
    match = _NUMBER_QUERY.match(q.strip())
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------------------------------------
# Guards: wrong requests change nothing and say why
# --------------------------------------------------------------------------------------------------------


def _ids(order: Order) -> dict[str, Any]:
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
            **_ids(order),
            expected_version=expected_version,
            current_version=order.version,
        )


def _refuse_if_archived(order: Order, what: str) -> None:
    if order.stage == S.archived:
        raise InvalidRequest(
            f"Order {order.display_number} is archived; {what} is not possible on an archived order "
            "(it is closed and kept for records).",
            **_ids(order),
        )


def _refuse_if_shipped(order: Order, what: str) -> None:
    _refuse_if_archived(order, what)
    if order.stage in SHIPPED_STAGES:
        raise InvalidRequest(
            f"Order {order.display_number} is {order.stage.value}; {what} is only possible before shipping.",
            **_ids(order),
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
            **_ids(order),
            errors=[{"field": "to", "reason": "unknown stage"}],
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
            **_ids(order),
            allowed=[s.value for s in allowed],
            requested=target.value,
            held_from=order.held_from.value if order.held_from else None,
        )
    if target == S.on_hold:
        held_from: Stage | None = order.stage
    else:
        held_from = None
    seq = order.history_seq + 1
    version = order.version + 1
    new = order.model_copy(
        update={
            "stage": target,
            "held_from": held_from,
            "stage_changed_at": now,
            "updated_at": now,
            "version": version,
            "history_seq": seq,
        }
    )
    data: dict[str, Any] = {"version": version}
    if held_from is not None:
        data["held_from"] = held_from.value
    entry = HistoryEntry(
        seq=seq,
        at=now,
        actor=actor,
        action="stage_changed",
        from_stage=order.stage,
        to_stage=target,
        reason=reason,
        data=data,
    )
    event = ev.OrderStageChanged(
        **_event_base(new, actor, now),
        from_stage=order.stage,
        to_stage=target,
        reason=reason,
        held_from=held_from,
    )
    return TransitionResult(new, entry, event)


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
            **_ids(order),
            allowed=[s.value for s in allowed_targets(order)],
            requested=S.abandoned.value,
        )
    return transition(order, S.abandoned, ABANDON_TIMER, "no address or payment in time", now)


# --------------------------------------------------------------------------------------------------------
# Placing and editing
# --------------------------------------------------------------------------------------------------------


def _event_base(order: Order, actor: Actor, now: datetime) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "number": order.number,
        "test": order.test,
        "version": order.version,
        "at": now,
        "actor": actor,
    }


def _entry(
    order: Order, actor: Actor, now: datetime, action: str, data: dict[str, Any], reason: str | None = None
) -> HistoryEntry:
    """A history entry numbered after ``order``'s last one (pass the order *before* the change)."""
    return HistoryEntry(seq=order.history_seq + 1, at=now, actor=actor, action=action, reason=reason, data=data)


def _apply(
    order: Order,
    updates: dict[str, Any],
    actor: Actor,
    now: datetime,
    action: str,
    data: dict[str, Any],
    make_event: Any,
    note: StaffNote | None = None,
) -> Outcome:
    """Bump version, stamp time, number one history entry, build the event from the new order."""
    entry = _entry(order, actor, now, action, data)
    changes = {**updates, "updated_at": now, "version": order.version + 1, "history_seq": entry.seq}
    new = order.model_copy(update=changes)
    entry.data.setdefault("version", new.version)
    event = make_event(_event_base(new, actor, now))
    return Outcome(order=new, changes=changes, history=[entry], events=[event], note=note)


def _json(model: BaseModel | None) -> Any:
    return None if model is None else model.model_dump(mode="json")


# Every order starts with nothing received: the payments service starts it there too and announces only a
# change (``payment.status_changed.v1``), so placing an order costs no extra event and no extra write here.
INITIAL_PAYMENT_STATUS = "unpaid"


def new_order(cmd: PlaceOrder, number: int, order_id: UUID, now: datetime, actor: Actor) -> Outcome:
    """A placed order from a ``PlaceOrder`` command, with totals computed exactly in its currency.

    ``number`` comes from the database sequence (#1001, ...). Amounts with more decimals than the currency
    has (``10.5`` JPY, ``1.005`` EUR) and a discount larger than the order are refused, never rounded.
    """
    currency = cmd.currency
    places = minor_unit(currency)
    errors: list[dict[str, str]] = []

    def check(amount: Decimal, name: str) -> None:
        if not fits(amount, currency):
            errors.append({"field": name, "reason": f"{currency} amounts have at most {places} decimal places"})

    for i, item in enumerate(cmd.items):
        check(item.unit_price, f"items[{i}].unit_price")
    for name in ("shipping", "discount", "tax"):
        check(getattr(cmd, name), name)
    if not errors:
        totals = compute_totals(
            [(item.quantity, item.unit_price) for item in cmd.items], currency, cmd.shipping, cmd.discount, cmd.tax
        )
        if totals.total < 0:
            errors.append(
                {
                    "field": "discount",
                    "reason": f"the discount {totals.discount} is larger than subtotal + shipping + tax "
                    f"({totals.subtotal + totals.shipping + totals.tax})",
                }
            )
    if errors:
        raise InvalidRequest(
            "The order's amounts are not valid: " + "; ".join(f"{e['field']}: {e['reason']}" for e in errors) + ".",
            errors=errors,
        )

    items = [
        LineItemView(
            sku=item.sku,
            name=item.name,
            quantity=item.quantity,
            unit_price=quantize(item.unit_price, currency),
            line_total=quantize(Decimal(item.quantity) * item.unit_price, currency),
        )
        for item in cmd.items
    ]
    placed_at = cmd.placed_at or now
    order = Order(
        id=order_id,
        number=number,
        channel=cmd.channel,
        stage=S.placed,
        customer=cmd.customer,
        items=items,
        currency=currency,
        totals=totals,
        shipping_address=cmd.shipping_address,
        payment_method=cmd.payment_method,
        payment_status=INITIAL_PAYMENT_STATUS,
        customer_note=cmd.customer_note or None,
        test=cmd.test or cmd.channel == Channel.test,
        external_ref=cmd.external_ref,
        placed_at=placed_at,
        stage_changed_at=now,
        created_at=now,
        updated_at=now,
        version=1,
        history_seq=1,
    )
    entry = HistoryEntry(
        seq=1,
        at=now,
        actor=actor,
        action="placed",
        to_stage=S.placed,
        data={"version": 1, "channel": cmd.channel.value, "total": str(totals.total), "currency": currency},
    )
    event = ev.OrderPlaced(
        **_event_base(order, actor, now),
        channel=order.channel,
        stage=order.stage,
        customer=ev.CustomerData.model_validate(order.customer.model_dump()),
        items=order.items,
        currency=order.currency,
        totals=order.totals,
        shipping_address=_address_data(order.shipping_address),
        payment_method=order.payment_method,
        customer_note=order.customer_note,
        placed_at=order.placed_at,
        external_ref=order.external_ref,
    )
    changes = order.model_dump(exclude={"notes"})
    return Outcome(order=order, changes=changes, history=[entry], events=[event])


def _address_data(address: Address | None) -> ev.AddressData | None:
    return None if address is None else ev.AddressData.model_validate(address.model_dump())


def set_address(order: Order, cmd: SetAddress, actor: Actor, now: datetime) -> Outcome:
    """The customer filled in (or staff corrected) the shipping address; refused once shipped."""
    check_version(order, cmd.expected_version)
    _refuse_if_shipped(order, "changing the address")
    if cmd.address == order.shipping_address:
        return Outcome(order)
    previous = order.shipping_address
    return _apply(
        order,
        {"shipping_address": cmd.address},
        actor,
        now,
        "address_set",
        {"address": _json(cmd.address), "previous": _json(previous)},
        lambda base: ev.OrderAddressSet(**base, address=_address_data(cmd.address), previous=_address_data(previous)),
    )


def set_payment_method(order: Order, cmd: SetPaymentMethod, actor: Actor, now: datetime) -> Outcome:
    """The customer chose how to pay, and/or the money arrived (``paid``).

    Marking paid is allowed until the order is archived (cash on delivery is paid at the door); changing the
    method is refused once shipped or once the order is paid with another method.
    """
    check_version(order, cmd.expected_version)
    _refuse_if_archived(order, "changing the payment")
    method_changes = cmd.method != order.payment_method
    if method_changes and order.stage in SHIPPED_STAGES:
        _refuse_if_shipped(order, "changing the payment method")
    if method_changes and order.paid:
        raise InvalidRequest(
            f"Order {order.display_number} is already paid"
            + (f" by {order.payment_method.value}" if order.payment_method else "")
            + f"; its payment method cannot change to {cmd.method.value}.",
            **_ids(order),
        )
    paid_at = order.paid_at or (now if cmd.paid else None)
    if not method_changes and paid_at == order.paid_at:
        return Outcome(order)
    previous = order.payment_method
    return _apply(
        order,
        {"payment_method": cmd.method, "paid_at": paid_at},
        actor,
        now,
        "payment_method_set",
        {
            "method": cmd.method.value,
            "paid": paid_at is not None,
            "previous_method": previous.value if previous else None,
        },
        lambda base: ev.OrderPaymentMethodSet(
            **base, method=cmd.method, paid=paid_at is not None, paid_at=paid_at, previous_method=previous
        ),
    )


def set_customer_note(order: Order, cmd: SetCustomerNote, actor: Actor, now: datetime) -> Outcome:
    """The customer added a note or skipped the question (either one completes that step)."""
    check_version(order, cmd.expected_version)
    _refuse_if_archived(order, "changing the customer note")
    if cmd.skip:
        updates: dict[str, Any] = {"customer_note_skipped": True}
    else:
        updates = {"customer_note": cmd.note, "customer_note_skipped": False}
    if all(getattr(order, k) == v for k, v in updates.items()):
        return Outcome(order)
    note = updates.get("customer_note", order.customer_note)
    return _apply(
        order,
        updates,
        actor,
        now,
        "customer_note_set",
        {"note": None if cmd.skip else cmd.note, "skipped": cmd.skip},
        lambda base: ev.OrderCustomerNoteSet(**base, note=note, skipped=cmd.skip),
    )


def change_customer(order: Order, cmd: ChangeCustomer, actor: Actor, now: datetime) -> Outcome:
    """Staff replaced the order's customer (they checked out with other contact details); not once shipped."""
    check_version(order, cmd.expected_version)
    _refuse_if_shipped(order, "changing the customer")
    if cmd.customer == order.customer:
        return Outcome(order)
    previous = order.customer
    return _apply(
        order,
        {"customer": cmd.customer},
        actor,
        now,
        "customer_changed",
        {"customer": _json(cmd.customer), "previous": _json(previous)},
        lambda base: ev.OrderCustomerChanged(
            **base,
            customer=ev.CustomerData.model_validate(cmd.customer.model_dump()),
            previous=ev.CustomerData.model_validate(previous.model_dump()),
        ),
    )


# --------------------------------------------------------------------------------------------------------
# Staff notes
# --------------------------------------------------------------------------------------------------------


def _find_note(order: Order, note_id: UUID) -> StaffNote:
    for note in order.notes:
        if note.id == note_id and not note.deleted:
            return note
    raise NotFound(
        f"Order {order.display_number} has no note {note_id}.",
        **_ids(order),
        note_id=str(note_id),
    )


def _replace_note(notes: Iterable[StaffNote], new: StaffNote) -> list[StaffNote]:
    return [new if n.id == new.id else n for n in notes]


def add_note(order: Order, cmd: AddNote, actor: Actor, now: datetime, note_id: UUID | None = None) -> Outcome:
    """A reminder or comment for the team. ``note_id`` may be given for idempotent retries."""
    _refuse_if_archived(order, "adding a note")
    nid = note_id or uuid4()
    if any(n.id == nid for n in order.notes):
        existing = next(n for n in order.notes if n.id == nid)
        if existing.text == cmd.text and not existing.deleted:
            return Outcome(order, note=existing)
        raise InvalidRequest(f"Order {order.display_number} already has a note {nid}.", **_ids(order), note_id=str(nid))
    note = StaffNote(id=nid, text=cmd.text, author=actor, created_at=now, updated_at=now)
    return _apply(
        order,
        {"notes": [*order.notes, note]},
        actor,
        now,
        "note_added",
        {"note_id": str(nid), "text": cmd.text},
        lambda base: ev.OrderNoteAdded(**base, note_id=nid, text=cmd.text),
        note=note,
    )


def edit_note(order: Order, note_id: UUID, cmd: EditNote, actor: Actor, now: datetime) -> Outcome:
    """New text for a note; the previous text stays in the history entry (the audit trail)."""
    _refuse_if_archived(order, "editing a note")
    old = _find_note(order, note_id)
    if old.text == cmd.text:
        return Outcome(order, note=old)
    note = old.model_copy(update={"text": cmd.text, "updated_at": now, "updated_by": actor})
    return _apply(
        order,
        {"notes": _replace_note(order.notes, note)},
        actor,
        now,
        "note_edited",
        {"note_id": str(note_id), "text": cmd.text, "previous_text": old.text},
        lambda base: ev.OrderNoteEdited(**base, note_id=note_id, text=cmd.text, previous_text=old.text),
        note=note,
    )


def delete_note(order: Order, note_id: UUID, actor: Actor, now: datetime) -> Outcome:
    """Hide a note from the order page; it is kept (``deleted=True``) with who deleted it and when."""
    _refuse_if_archived(order, "deleting a note")
    old = _find_note(order, note_id)
    note = old.model_copy(update={"deleted": True, "deleted_at": now, "deleted_by": actor, "updated_at": now})
    return _apply(
        order,
        {"notes": _replace_note(order.notes, note)},
        actor,
        now,
        "note_deleted",
        {"note_id": str(note_id), "text": old.text},
        lambda base: ev.OrderNoteDeleted(**base, note_id=note_id),
        note=note,
    )


# --------------------------------------------------------------------------------------------------------
# Views and the published description of the machine
# --------------------------------------------------------------------------------------------------------


def to_summary(order: Order) -> OrderSummary:
    """The order card for the list."""
    return OrderSummary(
        id=order.id,
        number=order.number,
        display_number=order.display_number,
        channel=order.channel,
        stage=order.stage,
        held_from=order.held_from,
        customer=order.customer,
        currency=order.currency,
        totals=order.totals,
        payment_method=order.payment_method,
        payment_status=order.payment_status,
        payment_authorized=order.payment_authorized,
        paid_at=order.paid_at,
        test=order.test,
        item_count=order.item_count,
        placed_at=order.placed_at,
        updated_at=order.updated_at,
        version=order.version,
    )


def to_note_view(note: StaffNote) -> NoteView:
    return NoteView(
        id=note.id,
        text=note.text,
        author=note.author,
        created_at=note.created_at,
        updated_at=note.updated_at,
        deleted=note.deleted,
    )


def to_detail(order: Order, history: Sequence[HistoryEntry] = (), include_deleted_notes: bool = False) -> OrderDetail:
    """The order page. ``allowed_transitions`` are the moves a person may choose now."""
    return OrderDetail(
        **to_summary(order).model_dump(),
        items=order.items,
        shipping_address=order.shipping_address,
        customer_note=order.customer_note,
        customer_note_skipped=order.customer_note_skipped,
        notes=[to_note_view(n) for n in order.notes if include_deleted_notes or not n.deleted],
        history=sorted(history, key=lambda h: h.seq),
        allowed_transitions=allowed_targets(order),
    )


def status_machine_table() -> dict[str, Any]:
    """The stage machine as JSON for the README, the dashboard and ``GET /orders/stages``, read from the table."""
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
    "ABANDON_TIMER",
    "AUTO_CONFIRM",
    "CANCELLABLE",
    "FINAL",
    "RESUMABLE_STAGES",
    "SHIPPED_STAGES",
    "STAGE_DESCRIPTIONS",
    "STAGE_LABELS",
    "SYSTEM",
    "TERMINAL",
    "TIMER_ONLY",
    "TRANSITIONS",
    "Order",
    "Outcome",
    "Stage",
    "StaffNote",
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
    "is_abandonable",
    "minor_unit",
    "new_order",
    "order_number_from_search",
    "payment_known",
    "quantize",
    "set_address",
    "set_customer_note",
    "set_payment_method",
    "should_auto_confirm",
    "status_machine_table",
    "to_detail",
    "to_note_view",
    "to_summary",
    "transition",
]
