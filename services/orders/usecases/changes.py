"""Changing an order: stage transitions, address, payment method, customer and customer note, staff notes.

Each of them is the one generic :func:`change` with the domain's decision for it: load the order under a
row lock, let the domain decide, and save order, history and events atomically. A request that repeats the
current state changes nothing and answers the order as it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.orders import domain, store
from services.orders.contracts.schemas import (
    Actor,
    AddNote,
    ChangeCustomer,
    EditNote,
    SetAddress,
    SetCustomerNote,
    SetPaymentMethod,
    Transition,
)
from services.orders.usecases.common import detail, now, save, with_auto_confirm
from shared.db import Database
from shared.errors import InvalidRequest, field_error, parse


def change(
    db: Database,
    ref: str,
    actor: Any,
    decide: Callable[[domain.Order, Actor, datetime], domain.Outcome],
    action: str,
) -> dict[str, Any]:
    """Load under a row lock, let the domain decide, save order + history + events atomically."""
    who = parse(Actor, actor, "actor")
    with db.transaction() as tx:
        order, history = store.load_with_history(tx, ref, for_update=True)
        at = now()
        outcome = decide(order, who, at)
        if not outcome.changed:
            return detail(order, history)  # the request repeated the current state: nothing to do
        outcome = with_auto_confirm(outcome, at)
        save(tx, outcome, previous_version=order.version, causation_id=f"command:{action}:{uuid.uuid4()}")
        return detail(outcome.order, [*history, *outcome.history])


def transition(db: Database, ref: str, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(Transition, command)
    return change(db, ref, actor, lambda o, a, at: domain.apply_transition(o, cmd, a, at).as_outcome(), "transition")


def set_address(db: Database, ref: str, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(SetAddress, command)
    return change(db, ref, actor, lambda o, a, at: domain.set_address(o, cmd, a, at), "set_address")


def set_payment_method(db: Database, ref: str, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(SetPaymentMethod, command)
    return change(db, ref, actor, lambda o, a, at: domain.set_payment_method(o, cmd, a, at), "set_payment_method")


def set_customer_note(db: Database, ref: str, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(SetCustomerNote, command)
    return change(db, ref, actor, lambda o, a, at: domain.set_customer_note(o, cmd, a, at), "set_customer_note")


def change_customer(db: Database, ref: str, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(ChangeCustomer, command)
    return change(db, ref, actor, lambda o, a, at: domain.change_customer(o, cmd, a, at), "change_customer")


def add_note(db: Database, ref: str, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(AddNote, command)
    return change(db, ref, actor, lambda o, a, at: domain.add_note(o, cmd, a, at), "add_note")


def edit_note(db: Database, ref: str, note_id: str, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(EditNote, command)
    nid = _note_id(note_id)
    return change(db, ref, actor, lambda o, a, at: domain.edit_note(o, nid, cmd, a, at), "edit_note")


def delete_note(db: Database, ref: str, note_id: str, actor: Any) -> dict[str, Any]:
    nid = _note_id(note_id)
    return change(db, ref, actor, lambda o, a, at: domain.delete_note(o, nid, a, at), "delete_note")


def _note_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidRequest(
            f"{value!r} is not a note id.", errors=[field_error("note_id", "not a UUID", "uuid_parsing", "path")]
        ) from None
