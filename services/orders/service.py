"""The orders service: its use cases (service layer) and its Nameko entrypoints.

Use cases are plain functions of a ``Database``: load under a row lock, let the domain decide, save the
order, its history and its events in one transaction, and answer with the contract's views
(``services.orders.views``). What orders does with each event of the payments service is one handler per
event model, listed in ``PAYMENT_EVENT_HANDLERS``. The Nameko class only translates RPC calls, timers and
events into those calls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from nameko.rpc import rpc
from nameko.timer import timer
from pydantic import BaseModel

from services.orders import domain, store, views
from services.orders.contracts.schemas import (
    Actor,
    AddNote,
    ChangeCustomer,
    EditNote,
    OrderQuery,
    PlaceOrder,
    SetAddress,
    SetCustomerNote,
    SetPaymentMethod,
    Transition,
)
from services.orders.contracts.stages import status_machine_table
from services.orders.settings import get_settings
from services.payments.contracts import events as pev
from shared import inbox, outbox
from shared.catalog import parse_data
from shared.consumer import subscribe
from shared.db import Database
from shared.envelope import Envelope
from shared.errors import DomainError, IdempotencyMismatch, InvalidRequest, parse, to_wire
from shared.nameko_ext import DatabaseProvider, OutboxRelayProvider

log = logging.getLogger(__name__)

SERVICE = "orders"


def _now() -> datetime:
    return datetime.now(UTC)


def _save(
    tx: psycopg.Connection[Any],
    outcome: domain.Outcome,
    *,
    previous_version: int | None,
    causation_id: str,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> None:
    # Not pipelined: under eventlet psycopg's pipeline wait spins and measured slower (320 vs 425 orders/s).
    updated = _write(tx, outcome, previous_version, causation_id, idempotency_key, request_hash)
    if updated is not None and updated.rowcount != 1:
        # We hold the row lock, so this cannot happen unless something bypassed it: refuse loudly.
        raise RuntimeError(f"order {outcome.order.id} changed under a held lock (version {previous_version})")


def _write(
    tx: psycopg.Connection[Any],
    outcome: domain.Outcome,
    previous_version: int | None,
    causation_id: str,
    idempotency_key: str | None,
    request_hash: str | None,
) -> psycopg.Cursor[Any] | None:
    order = outcome.order
    updated = None
    if previous_version is None:
        store.insert(tx, order, idempotency_key, request_hash)
    else:
        updated = store.update(tx, order, previous_version)
    store.add_history(tx, order.id, outcome.history)
    for event in outcome.events:
        outbox.emit(tx, SERVICE, event, subject=str(order.id), correlation_id=str(order.id), causation_id=causation_id)
    return updated


def _with_auto_confirm(outcome: domain.Outcome, now: datetime) -> domain.Outcome:
    """Fold the automatic placed → confirmed move into the same change (one transaction, two events)."""
    confirmed = domain.auto_confirm(outcome.order, now)
    if confirmed is None:
        return outcome
    return domain.Outcome(
        order=confirmed.order,
        changes={**outcome.changes, **confirmed.changes},
        history=[*outcome.history, confirmed.history_entry],
        events=[*outcome.events, confirmed.event],
        note=outcome.note,
    )


def _detail(tx: psycopg.Connection[Any], order: domain.Order) -> dict[str, Any]:
    return views.order_detail(order, store.history(tx, order.id)).model_dump(mode="json")


def _request_hash(cmd: BaseModel) -> str:
    canonical = json.dumps(cmd.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# ------------------------------------------------------------------------------------------- use cases


def place_order(db: Database, command: Any, actor: Any, idempotency_key: str | None = None) -> dict[str, Any]:
    cmd = parse(PlaceOrder, command, "order")
    who = parse(Actor, actor, "actor")
    key = f"{who.id}:{idempotency_key}" if idempotency_key else None
    request_hash = _request_hash(cmd)
    for _attempt in range(2):
        try:
            with db.transaction() as tx:
                number, existing = store.next_number(tx, key)
                if existing is not None:
                    order, stored_hash = existing
                    if stored_hash != request_hash:
                        raise IdempotencyMismatch(
                            f"Idempotency-Key {idempotency_key!r} was used for another order "
                            f"({order.display_number}) with a different body.",
                            order_id=str(order.id),
                            number=order.number,
                        )
                    return _detail(tx, order)
                now = _now()
                outcome = domain.new_order(cmd, number, uuid.uuid4(), now, who)
                outcome = _with_auto_confirm(outcome, now)
                _save(
                    tx,
                    outcome,
                    previous_version=None,
                    causation_id=f"command:place_order:{idempotency_key or uuid.uuid4()}",
                    idempotency_key=key,
                    request_hash=request_hash,
                )
                return views.order_detail(outcome.order, outcome.history).model_dump(mode="json")
        except psycopg.errors.UniqueViolation:
            if key is None:
                raise
            # The same key raced in from another request: the second pass returns the first one's order.
    raise RuntimeError("unreachable")


def place_orders(db: Database, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Place many orders in one transaction: the gateway batches concurrent requests into one call.

    One RPC and one commit per batch instead of per order is what lets placement scale (Nameko's per-call
    cost is ~3 ms of CPU here). Each item answers on its own, ``{"result": detail}`` or ``{"error": ...}``
    in Nameko's error shape; a bad item never fails the others. If the batch's transaction fails as a whole
    (say, two requests with the same idempotency key racing), each item is placed on its own instead.
    """
    answers: list[dict[str, Any] | None] = [None] * len(requests)
    prepared: list[tuple[int, PlaceOrder, Actor, str | None, str | None, str]] = []
    for i, req in enumerate(requests):
        try:
            cmd = parse(PlaceOrder, req.get("command"), "order")
            who = parse(Actor, req.get("actor"), "actor")
        except DomainError as exc:
            answers[i] = _error_answer(exc)
            continue
        raw_key = req.get("idempotency_key")
        key = f"{who.id}:{raw_key}" if raw_key else None
        prepared.append((i, cmd, who, raw_key, key, _request_hash(cmd)))
    if prepared:
        try:
            with db.transaction() as tx:
                numbers, existing = store.next_numbers(tx, [p[4] for p in prepared])
                now = _now()
                seen: set[str] = set()
                for (i, cmd, who, raw_key, key, request_hash), number in zip(prepared, numbers, strict=True):
                    if key is not None and (key in existing or key in seen):
                        answers[i] = None  # answered after commit, on its own (replay or mismatch)
                        continue
                    if key is not None:
                        seen.add(key)
                    try:
                        outcome = _with_auto_confirm(domain.new_order(cmd, number, uuid.uuid4(), now, who), now)
                    except DomainError as exc:
                        answers[i] = _error_answer(exc)
                        continue
                    _save(
                        tx,
                        outcome,
                        previous_version=None,
                        causation_id=f"command:place_order:{raw_key or uuid.uuid4()}",
                        idempotency_key=key,
                        request_hash=request_hash,
                    )
                    answers[i] = {"result": views.order_detail(outcome.order, outcome.history).model_dump(mode="json")}
        except psycopg.Error:
            log.warning("batch of %d placements failed as a whole; placing them one by one", len(prepared))
            answers = [a if a is not None and "error" in a else None for a in answers]
    for i, req in enumerate(requests):
        if answers[i] is None:
            try:
                answers[i] = {
                    "result": place_order(db, req.get("command"), req.get("actor"), req.get("idempotency_key"))
                }
            except DomainError as exc:
                answers[i] = _error_answer(exc)
    return [a for a in answers if a is not None]


def _error_answer(exc: DomainError) -> dict[str, Any]:
    return {"error": to_wire(exc)}


def get_order(db: Database, ref: str) -> dict[str, Any]:
    with db.transaction() as tx:
        return _detail(tx, store.load(tx, ref))


def list_orders(db: Database, query: Any) -> dict[str, Any]:
    q = parse(OrderQuery, query or {}, "query")
    with db.transaction() as tx:
        orders, next_cursor = store.list_orders(tx, q)
    return views.order_page(orders, next_cursor).model_dump(mode="json")


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
        order = store.load(tx, ref, for_update=True)
        now = _now()
        outcome = decide(order, who, now)
        if not outcome.changed:
            return _detail(tx, order)  # the request repeated the current state: nothing to do
        outcome = _with_auto_confirm(outcome, now)
        _save(tx, outcome, previous_version=order.version, causation_id=f"command:{action}:{uuid.uuid4()}")
        return _detail(tx, outcome.order)


def abandon_stale_orders(db: Database, abandon_after_seconds: float, batch: int = 200) -> int:
    """The timer's job: placed orders without address or payment for too long become abandoned."""
    now = _now()
    cutoff = datetime.fromtimestamp(now.timestamp() - abandon_after_seconds, UTC)
    with db.transaction() as tx:
        count = 0
        for order in store.stale_placed_orders(tx, cutoff, batch):
            if not domain.is_abandonable(order, now, abandon_after_seconds):
                continue
            moved = domain.abandon(order, now, abandon_after_seconds)
            _save(tx, moved.as_outcome(), previous_version=order.version, causation_id="timer:abandon")
            count += 1
    if count:
        log.info("abandoned %d placed orders without address or payment", count)
    return count


# ------------------------------------------------------------------------------------- payment projection

PAYMENTS_ACTOR = domain.PAYMENTS
PAYMENTS_CONSUMER = "orders.payments"


def handle_payment_event(db: Database, env: Envelope) -> inbox.Outcome:
    """Apply one ``payment.*``/``refund.*`` event once and in order (per-order sequence of payments)."""
    return inbox.process(db, PAYMENTS_CONSUMER, env, apply_payment_event)


def apply_payment_event(tx: psycopg.Connection[Any], env: Envelope) -> None:
    """Payments own the payment status; orders keep a copy (list, sort by paid_at) and act on it.

    The handler for the event's model is looked up in ``PAYMENT_EVENT_HANDLERS``; an event orders has no
    handler for (a payment link was created, say) is consumed and ignored.
    """
    data = parse_data(env)
    handler = PAYMENT_EVENT_HANDLERS.get(type(data))
    if handler is None:
        return
    order = store.load(tx, env.subject, for_update=True)
    handler(tx, env, order, data, _now())


def _on_status_changed(
    tx: psycopg.Connection[Any], env: Envelope, order: domain.Order, data: pev.PaymentStatusChanged, now: datetime
) -> None:
    """Project ``payment_status``/``paid_at``/``payment_authorized``; a card order paid (or authorized in
    full) with address and note (added or skipped) is confirmed automatically (history + stage event)."""
    paid_at = data.paid_at or order.paid_at
    authorized = data.authorized > 0 and data.authorized >= data.balance_due
    projected = domain.project_payment(order, data.status, paid_at, authorized)
    confirmed = domain.auto_confirm(projected, now)
    if confirmed is None:
        store.set_payment_projection(tx, projected, data.status, paid_at)
        return
    _save(tx, confirmed.as_outcome(), previous_version=order.version, causation_id=str(env.id))


def _on_ledger_violation(
    tx: psycopg.Connection[Any], env: Envelope, order: domain.Order, data: pev.PaymentLedgerViolation, now: datetime
) -> None:
    """The order goes on hold with the reason (when it can), so staff see it; else the history says it."""
    reason = data.reason[:1000]
    if domain.can_transition(order, domain.Stage.on_hold, PAYMENTS_ACTOR):
        moved = domain.transition(order, domain.Stage.on_hold, PAYMENTS_ACTOR, reason, now)
        _save(tx, moved.as_outcome(), previous_version=order.version, causation_id=str(env.id))
    else:
        _record(tx, env, order, "payment_ledger_violation", reason, {"violations": data.violations}, now)


def _on_refund_completed(
    tx: psycopg.Connection[Any], env: Envelope, order: domain.Order, data: pev.RefundCompleted, now: datetime
) -> None:
    """The refund is recorded in the order's history (``refund_completed``)."""
    details = {
        "reference": data.reference,
        "amount": str(data.amount),
        "currency": data.currency,
        "manual": data.manual,
        "manual_amount": str(data.manual_amount),
        "lines": data.lines,
        "allocations": data.allocations,
    }
    _record(tx, env, order, "refund_completed", data.reason, details, now)


def _on_refund_paid_out(
    tx: psycopg.Connection[Any], env: Envelope, order: domain.Order, data: pev.RefundPaidOut, now: datetime
) -> None:
    """A manual refund staff paid out is recorded in the order's history (``refund_paid_out``)."""
    details = {"reference": data.reference, "amount": str(data.amount), "currency": data.currency}
    _record(tx, env, order, "refund_paid_out", data.note, details, now)


def _on_payment_voided(
    tx: psycopg.Connection[Any], env: Envelope, order: domain.Order, data: pev.PaymentVoided, now: datetime
) -> None:
    """A released card authorization is recorded in the order's history (``payment_voided``)."""
    details = {"payment_id": data.payment_id, "amount": str(data.amount), "currency": data.currency}
    _record(tx, env, order, "payment_voided", data.reason, details, now)


PaymentEventHandler = Callable[[psycopg.Connection[Any], Envelope, domain.Order, Any, datetime], None]

PAYMENT_EVENT_HANDLERS: dict[type[Any], PaymentEventHandler] = {
    pev.PaymentStatusChanged: _on_status_changed,
    pev.PaymentLedgerViolation: _on_ledger_violation,
    pev.RefundCompleted: _on_refund_completed,
    pev.RefundPaidOut: _on_refund_paid_out,
    pev.PaymentVoided: _on_payment_voided,
}
"""The payments events orders acts on, each with its handler (the order is loaded, locked, for it)."""


def _record(
    tx: psycopg.Connection[Any],
    env: Envelope,
    order: domain.Order,
    action: str,
    reason: str | None,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """Write what payments reported into the order's history (new version, no event of ours)."""
    outcome = domain.record(order, PAYMENTS_ACTOR, now, action, reason, data)
    _save(tx, outcome, previous_version=order.version, causation_id=str(env.id))


# ---------------------------------------------------------------------------------------------- Nameko


class OrdersService:
    """Orders: the order stage machine, notes, search. Publishes ``order.*`` events."""

    name = SERVICE
    db: Database = DatabaseProvider(SERVICE)  # type: ignore[assignment]
    relay = OutboxRelayProvider(SERVICE)

    @rpc(expected_exceptions=DomainError)
    def place_order(self, command: Any, actor: Any, idempotency_key: str | None = None) -> dict[str, Any]:
        return place_order(self.db, command, actor, idempotency_key)

    @rpc(expected_exceptions=DomainError)
    def place_orders(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return place_orders(self.db, requests)

    @rpc(expected_exceptions=DomainError)
    def get_order(self, ref: str) -> dict[str, Any]:
        return get_order(self.db, ref)

    @rpc(expected_exceptions=DomainError)
    def list_orders(self, query: Any = None) -> dict[str, Any]:
        return list_orders(self.db, query)

    @rpc(expected_exceptions=DomainError)
    def transition(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        cmd = parse(Transition, command)
        return change(
            self.db, ref, actor, lambda o, a, now: domain.apply_transition(o, cmd, a, now).as_outcome(), "transition"
        )

    @rpc(expected_exceptions=DomainError)
    def set_address(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        cmd = parse(SetAddress, command)
        return change(self.db, ref, actor, lambda o, a, now: domain.set_address(o, cmd, a, now), "set_address")

    @rpc(expected_exceptions=DomainError)
    def set_payment_method(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        cmd = parse(SetPaymentMethod, command)
        return change(
            self.db, ref, actor, lambda o, a, now: domain.set_payment_method(o, cmd, a, now), "set_payment_method"
        )

    @rpc(expected_exceptions=DomainError)
    def set_customer_note(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        cmd = parse(SetCustomerNote, command)
        return change(
            self.db, ref, actor, lambda o, a, now: domain.set_customer_note(o, cmd, a, now), "set_customer_note"
        )

    @rpc(expected_exceptions=DomainError)
    def change_customer(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        cmd = parse(ChangeCustomer, command)
        return change(self.db, ref, actor, lambda o, a, now: domain.change_customer(o, cmd, a, now), "change_customer")

    @rpc(expected_exceptions=DomainError)
    def add_note(self, ref: str, command: Any, actor: Any) -> dict[str, Any]:
        cmd = parse(AddNote, command)
        return change(self.db, ref, actor, lambda o, a, now: domain.add_note(o, cmd, a, now), "add_note")

    @rpc(expected_exceptions=DomainError)
    def edit_note(self, ref: str, note_id: str, command: Any, actor: Any) -> dict[str, Any]:
        cmd = parse(EditNote, command)
        nid = _note_id(note_id)
        return change(self.db, ref, actor, lambda o, a, now: domain.edit_note(o, nid, cmd, a, now), "edit_note")

    @rpc(expected_exceptions=DomainError)
    def delete_note(self, ref: str, note_id: str, actor: Any) -> dict[str, Any]:
        nid = _note_id(note_id)
        return change(self.db, ref, actor, lambda o, a, now: domain.delete_note(o, nid, a, now), "delete_note")

    @rpc
    def status_machine(self) -> dict[str, Any]:
        return status_machine_table()

    @subscribe("payments", ["payment.#", "refund.#"])
    def on_payment_event(self, env: Envelope, data: Any) -> None:
        handle_payment_event(self.db, env)

    @timer(interval=get_settings().abandon_check_interval_seconds)
    def abandon_stale_orders(self) -> None:
        abandon_stale_orders(self.db, get_settings().abandon_after_seconds)


def _note_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidRequest(
            f"{value!r} is not a note id.", errors=[{"field": "note_id", "reason": "not a UUID"}]
        ) from None
