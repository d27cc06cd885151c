"""Placing orders: one at a time (with the client's Idempotency-Key) or a batch the gateway gathered."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg

from services.orders import domain, store
from services.orders.contracts.schemas import Actor, OrderDetail, PlaceOrder, trusted_place_order
from services.orders.usecases import views
from services.orders.usecases.common import SERVICE, now, request_hash, save, with_auto_confirm
from shared import outbox
from shared.db import Database
from shared.errors import DomainError, IdempotencyMismatch, parse, to_wire

log = logging.getLogger(__name__)


def place_order(db: Database, command: Any, actor: Any, idempotency_key: str | None = None) -> dict[str, Any]:
    cmd = parse(PlaceOrder, command, "order")
    return _place_one(db, cmd, parse(Actor, actor, "actor"), idempotency_key).model_dump(mode="json")


def _place_one(db: Database, cmd: PlaceOrder, who: Actor, idempotency_key: str | None) -> OrderDetail:
    key = f"{who.id}:{idempotency_key}" if idempotency_key else None
    cmd_hash = request_hash(cmd)
    for _attempt in range(2):
        try:
            with db.transaction() as tx:
                number, existing = store.next_number(tx, key)
                if existing is not None:
                    order, stored_hash = existing
                    if stored_hash != cmd_hash:
                        raise IdempotencyMismatch(
                            f"Idempotency-Key {idempotency_key!r} was used for another order "
                            f"({order.display_number}) with a different body.",
                            order_id=str(order.id),
                            number=order.number,
                        )
                    return views.order_detail(order, store.history(tx, order.id))
                at = now()
                outcome = domain.new_order(cmd, number, uuid.uuid4(), at, who)
                outcome = with_auto_confirm(outcome, at)
                save(
                    tx,
                    outcome,
                    previous_version=None,
                    causation_id=f"command:place_order:{idempotency_key or uuid.uuid4()}",
                    idempotency_key=key,
                    request_hash=cmd_hash,
                )
                return views.order_detail(outcome.order, outcome.history)
        except psycopg.errors.UniqueViolation:
            if key is None:
                raise
            # The same key raced in from another request: the second pass returns the first one's order.
    raise RuntimeError("unreachable")


class _Item:
    """One placement of a batch on its way through :func:`place_orders`."""

    __slots__ = ("cmd", "who", "raw_key", "key", "hash", "outcome")

    def __init__(self, cmd: PlaceOrder, who: Actor, raw_key: str | None) -> None:
        self.cmd = cmd
        self.who = who
        self.raw_key = raw_key
        self.key = f"{who.id}:{raw_key}" if raw_key else None
        self.hash = request_hash(cmd)
        self.outcome: domain.Outcome | None = None


def place_orders(
    db: Database, requests: list[dict[str, Any]], *, validated: bool = False, as_json: bool = False
) -> list[dict[str, Any]]:
    """Place many orders in one transaction: the gateway batches concurrent requests into one call.

    One RPC and one commit per batch instead of per order is what lets placement scale (Nameko's per-call
    cost is ~3 ms of CPU here), and the batch is written set-based: one statement for the order numbers (and
    the orders the batch's idempotency keys already placed), one INSERT for every order, one for every
    history entry and one for every event (``outbox.emit_many``), whatever the batch's size.

    Each item answers on its own, ``{"result": detail}`` or ``{"error": ...}`` in Nameko's error shape; a bad
    item (invalid, or refused by the domain) is answered before anything is written and never fails the
    others. An idempotency key the batch repeats or that already placed an order is answered on its own
    after the batch's commit (the first order's detail, or the mismatch). If the batch's transaction fails as
    a whole (say, a key racing in from another request), each item is placed on its own instead.

    ``validated``: the caller (the gateway) validated each command with ``PlaceOrder`` already, so it is
    rebuilt without validating it again. ``as_json``: each result comes as ``{"result_json": <the
    OrderDetail's JSON text>, "id": <order id>}``, serialized once here and passed on as is by the gateway.
    """
    answers: list[dict[str, Any] | None] = [None] * len(requests)
    items: dict[int, _Item] = {}
    for i, req in enumerate(requests):
        try:
            command = req.get("command")
            cmd = (
                trusted_place_order(command)
                if validated and isinstance(command, dict)
                else parse(PlaceOrder, command, "order")
            )
            items[i] = _Item(cmd, parse(Actor, req.get("actor"), "actor"), req.get("idempotency_key"))
        except DomainError as exc:
            answers[i] = _error_answer(exc)
    if items:
        try:
            with db.transaction() as tx:
                _write_batch(tx, items, answers, as_json)
        except psycopg.Error:
            log.warning("batch of %d placements failed as a whole; placing them one by one", len(items))
            for i in items:
                answer = answers[i]
                if answer is not None and "error" not in answer:  # placed in the rolled-back transaction
                    answers[i] = None
    for i, item in items.items():
        if answers[i] is None:
            try:
                answers[i] = _result(_place_one(db, item.cmd, item.who, item.raw_key), as_json)
            except DomainError as exc:
                answers[i] = _error_answer(exc)
    return [a for a in answers if a is not None]


def _write_batch(tx: store.Tx, items: dict[int, _Item], answers: list[dict[str, Any] | None], as_json: bool) -> None:
    """The batch's new orders, set-based; fills ``answers`` for them and for the ones the domain refused."""
    numbers, existing = store.next_numbers(tx, [item.key for item in items.values()])
    at = now()
    seen: set[str] = set()
    placed: list[tuple[int, _Item]] = []
    for (i, item), number in zip(items.items(), numbers, strict=True):
        if item.key is not None:
            if item.key in existing or item.key in seen:
                continue  # answered after commit, on its own (replay or mismatch)
            seen.add(item.key)
        try:
            item.outcome = with_auto_confirm(domain.new_order(item.cmd, number, uuid.uuid4(), at, item.who), at)
        except DomainError as exc:
            answers[i] = _error_answer(exc)
            continue
        placed.append((i, item))
    if not placed:
        return
    outcomes = [(item, item.outcome) for _, item in placed if item.outcome is not None]
    store.insert_many(tx, [(o.order, item.key, item.hash) for item, o in outcomes])
    store.add_histories(tx, [(o.order.id, entry) for _, o in outcomes for entry in o.history])
    outbox.emit_many(
        tx,
        SERVICE,
        [
            outbox.Emission(
                event,
                subject=str(o.order.id),
                correlation_id=str(o.order.id),
                causation_id=f"command:place_order:{item.raw_key or uuid.uuid4()}",
            )
            for item, o in outcomes
            for event in o.events
        ],
    )
    for i, item in placed:
        assert item.outcome is not None
        answers[i] = _result(views.order_detail(item.outcome.order, item.outcome.history), as_json)


def _result(order: OrderDetail, as_json: bool) -> dict[str, Any]:
    if as_json:
        return {"result_json": order.model_dump_json(), "id": str(order.id)}
    return {"result": order.model_dump(mode="json")}


def _error_answer(exc: DomainError) -> dict[str, Any]:
    return {"error": to_wire(exc)}

