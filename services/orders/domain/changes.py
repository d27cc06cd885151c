"""Placing an order and every edit after that: the only code that builds a changed ``Order``.

Everything here is a pure function of (order, command, actor, now): it either returns an ``Outcome`` (the
new order plus the history entries and events to store) or raises a ``DomainError`` and changes nothing.
The service loads an ``Order``, calls one of these inside its transaction and saves the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel

from services.orders.contracts import events as ev
from services.orders.contracts.schemas import (
    Actor,
    AddNote,
    ChangeCustomer,
    Channel,
    EditNote,
    PlaceOrder,
    SetAddress,
    SetCustomerNote,
    SetPaymentMethod,
    Stage,
)
from services.orders.contracts.stages import SHIPPED_STAGES
from services.orders.domain import events
from services.orders.domain.machine import (
    Outcome,
    check_version,
    ids,
    refuse_if_archived,
    refuse_if_shipped,
)
from services.orders.domain.model import HistoryRecord, LineItem, Order, StaffNote, compute_totals
from shared.errors import InvalidRequest, NotAllowedInThisState, NotFound, describe, field_error
from shared.money import MoneyError, fits, minor_unit, normalize_currency, quantize

# Every order starts with nothing received: the payments service starts it there too and announces only a
# change (``payment.status_changed.v1``), so placing an order costs no extra event and no extra write here.
INITIAL_PAYMENT_STATUS = "unpaid"


def _entry(
    order: Order, actor: Actor, now: datetime, action: str, data: dict[str, Any], reason: str | None = None
) -> HistoryRecord:
    """A history entry numbered after ``order``'s last one (pass the order *before* the change)."""
    return HistoryRecord(seq=order.history_seq + 1, at=now, actor=actor, action=action, reason=reason, data=data)


def _apply(
    order: Order,
    updates: dict[str, Any],
    actor: Actor,
    now: datetime,
    action: str,
    data: dict[str, Any],
    event: Callable[[Order], ev.OrderEvent] | None,
    note: StaffNote | None = None,
    reason: str | None = None,
) -> Outcome:
    """Bump version, stamp time, number one history entry, build the event (if any) from the new order."""
    seq = order.history_seq + 1
    version = order.version + 1
    changes = {**updates, "updated_at": now, "version": version, "history_seq": seq}
    new = replace(order, **changes)
    entry = _entry(order, actor, now, action, data if "version" in data else {**data, "version": version}, reason)
    return Outcome(order=new, changes=changes, history=[entry], events=[event(new)] if event else [], note=note)


def _json(model: BaseModel | None) -> Any:
    return None if model is None else model.model_dump(mode="json")


def _currency(cmd: PlaceOrder) -> str:
    try:
        return normalize_currency(cmd.currency)
    except MoneyError as exc:
        raise InvalidRequest(
            f"The order's currency is not valid: {exc}.",
            errors=[field_error("currency", str(exc).removeprefix("currency: "), "unknown_currency")],
        ) from None


def new_order(cmd: PlaceOrder, number: int, order_id: UUID, now: datetime, actor: Actor) -> Outcome:
    """A placed order from a ``PlaceOrder`` command, with totals computed exactly in its currency.

    ``number`` comes from the database sequence (#1001, ...). An unknown currency, amounts with more
    decimals than the currency has (``10.5`` JPY, ``1.005`` EUR) and a discount larger than the order are
    refused, never rounded.
    """
    currency = _currency(cmd)
    places = minor_unit(currency)
    errors: list[dict[str, str]] = []

    def check(amount: Decimal, name: str) -> None:
        if not fits(amount, currency):
            errors.append(field_error(name, f"{currency} amounts have at most {places} decimal places",
                                      "too_many_decimals"))

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
                field_error(
                    "discount",
                    f"the discount {totals.discount} is larger than subtotal + shipping + tax "
                    f"({totals.subtotal + totals.shipping + totals.tax})",
                    "discount_exceeds_total",
                )
            )
    if errors:
        raise InvalidRequest("The order's amounts are not valid: " + describe(errors) + ".", errors=errors)

    items = tuple(
        LineItem(
            sku=item.sku,
            name=item.name,
            quantity=item.quantity,
            unit_price=quantize(item.unit_price, currency),
            line_total=quantize(Decimal(item.quantity) * item.unit_price, currency),
        )
        for item in cmd.items
    )
    order = Order(
        id=order_id,
        number=number,
        channel=cmd.channel,
        stage=Stage.placed,
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
        placed_at=cmd.placed_at or now,
        stage_changed_at=now,
        created_at=now,
        updated_at=now,
        version=1,
        history_seq=1,
    )
    entry = HistoryRecord(
        seq=1,
        at=now,
        actor=actor,
        action="placed",
        to_stage=Stage.placed,
        data={"version": 1, "channel": cmd.channel.value, "total": str(totals.total), "currency": currency},
    )
    changes = {f.name: getattr(order, f.name) for f in fields(order) if f.name != "notes"}
    return Outcome(order=order, changes=changes, history=[entry], events=[events.order_placed(order, actor, now)])


def set_address(order: Order, cmd: SetAddress, actor: Actor, now: datetime) -> Outcome:
    """The customer filled in (or staff corrected) the shipping address; refused once shipped."""
    check_version(order, cmd.expected_version)
    refuse_if_shipped(order, "changing the address")
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
        lambda new: events.address_set(new, previous, actor, now),
    )


def set_payment_method(order: Order, cmd: SetPaymentMethod, actor: Actor, now: datetime) -> Outcome:
    """The customer chose how to pay, and/or the money arrived (``paid``).

    Marking paid is allowed until the order is archived (cash on delivery is paid at the door); changing the
    method is refused once shipped or once the order is paid with another method.
    """
    check_version(order, cmd.expected_version)
    refuse_if_archived(order, "changing the payment")
    method_changes = cmd.method != order.payment_method
    if method_changes and order.stage in SHIPPED_STAGES:
        refuse_if_shipped(order, "changing the payment method")
    if method_changes and order.paid:
        raise NotAllowedInThisState(
            f"Order {order.display_number} is already paid"
            + (f" by {order.payment_method.value}" if order.payment_method else "")
            + f"; its payment method cannot change to {cmd.method.value}.",
            **ids(order),
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
        lambda new: events.payment_method_set(new, previous, actor, now),
    )


def set_customer_note(order: Order, cmd: SetCustomerNote, actor: Actor, now: datetime) -> Outcome:
    """The customer added a note or skipped the question (either one completes that step)."""
    check_version(order, cmd.expected_version)
    refuse_if_archived(order, "changing the customer note")
    if cmd.skip:
        updates: dict[str, Any] = {"customer_note_skipped": True}
    else:
        updates = {"customer_note": cmd.note, "customer_note_skipped": False}
    if all(getattr(order, k) == v for k, v in updates.items()):
        return Outcome(order)
    return _apply(
        order,
        updates,
        actor,
        now,
        "customer_note_set",
        {"note": None if cmd.skip else cmd.note, "skipped": cmd.skip},
        lambda new: events.customer_note_set(new, cmd.skip, actor, now),
    )


def change_customer(order: Order, cmd: ChangeCustomer, actor: Actor, now: datetime) -> Outcome:
    """Staff replaced the order's customer (they checked out with other contact details); not once shipped."""
    check_version(order, cmd.expected_version)
    refuse_if_shipped(order, "changing the customer")
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
        lambda new: events.customer_changed(new, previous, actor, now),
    )


# --------------------------------------------------------------------------------------------------------
# What the payments service reports
# --------------------------------------------------------------------------------------------------------


def project_payment(order: Order, status: str, paid_at: datetime | None, authorized: bool) -> Order:
    """The order's copy of its payment status (payments own it): for the list, sorting and auto-confirm.

    Not a change of the order itself: no new version, no history entry, no event.
    """
    return replace(order, payment_status=status, paid_at=paid_at, payment_authorized=authorized)


def record(order: Order, actor: Actor, now: datetime, action: str, reason: str | None, data: dict[str, Any]) -> Outcome:
    """Write something that happened to the order elsewhere (a refund, a released card) into its history.

    The order gets a new version (so readers see it changed) but no event: the news is another service's.
    """
    return _apply(order, {}, actor, now, action, data, None, reason=reason)


# --------------------------------------------------------------------------------------------------------
# Staff notes
# --------------------------------------------------------------------------------------------------------


def _find_note(order: Order, note_id: UUID) -> StaffNote:
    for note in order.notes:
        if note.id == note_id and not note.deleted:
            return note
    raise NotFound(
        f"Order {order.display_number} has no note {note_id}.",
        **ids(order),
        note_id=str(note_id),
    )


def _replace_note(notes: Iterable[StaffNote], new: StaffNote) -> tuple[StaffNote, ...]:
    return tuple(new if n.id == new.id else n for n in notes)


def add_note(order: Order, cmd: AddNote, actor: Actor, now: datetime, note_id: UUID | None = None) -> Outcome:
    """A reminder or comment for the team. ``note_id`` may be given for idempotent retries."""
    refuse_if_archived(order, "adding a note")
    nid = note_id or uuid4()
    if any(n.id == nid for n in order.notes):
        existing = next(n for n in order.notes if n.id == nid)
        if existing.text == cmd.text and not existing.deleted:
            return Outcome(order, note=existing)
        raise NotAllowedInThisState(  # the id is taken by another note: a conflict with what exists, 409
            f"Order {order.display_number} already has a note {nid} with another text.", **ids(order), note_id=str(nid)
        )
    note = StaffNote(id=nid, text=cmd.text, author=actor, created_at=now, updated_at=now)
    return _apply(
        order,
        {"notes": (*order.notes, note)},
        actor,
        now,
        "note_added",
        {"note_id": str(nid), "text": cmd.text},
        lambda new: events.note_added(new, nid, cmd.text, actor, now),
        note=note,
    )


def edit_note(order: Order, note_id: UUID, cmd: EditNote, actor: Actor, now: datetime) -> Outcome:
    """New text for a note; the previous text stays in the history entry (the audit trail)."""
    refuse_if_archived(order, "editing a note")
    old = _find_note(order, note_id)
    if old.text == cmd.text:
        return Outcome(order, note=old)
    note = replace(old, text=cmd.text, updated_at=now, updated_by=actor)
    return _apply(
        order,
        {"notes": _replace_note(order.notes, note)},
        actor,
        now,
        "note_edited",
        {"note_id": str(note_id), "text": cmd.text, "previous_text": old.text},
        lambda new: events.note_edited(new, note_id, cmd.text, old.text, actor, now),
        note=note,
    )


def delete_note(order: Order, note_id: UUID, actor: Actor, now: datetime) -> Outcome:
    """Hide a note from the order page; it is kept (``deleted=True``) with who deleted it and when."""
    refuse_if_archived(order, "deleting a note")
    old = _find_note(order, note_id)
    note = replace(old, deleted=True, deleted_at=now, deleted_by=actor, updated_at=now)
    return _apply(
        order,
        {"notes": _replace_note(order.notes, note)},
        actor,
        now,
        "note_deleted",
        {"note_id": str(note_id), "text": old.text},
        lambda new: events.note_deleted(new, note_id, actor, now),
        note=note,
    )
