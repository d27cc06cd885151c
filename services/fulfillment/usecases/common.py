"""What every fulfillment use case does the same way: announce events (order events with the order id as
subject, stock events with the SKU), recompute and announce the fulfillment status, move stock through
reservations (reserve, release, consume at hand-over, put back when a parcel comes back), and turn the
domain's refusals and the carrier's failures into client errors.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

import psycopg

from services.fulfillment import domain, store
from services.fulfillment.carrier import CarrierError
from services.fulfillment.contracts import events as ev
from services.fulfillment.contracts.errors import CarrierFailed
from services.fulfillment.contracts.vocabulary import ShipmentStatus
from services.orders.contracts.schemas import Actor
from shared import outbox
from shared.db import Database
from shared.errors import DomainError, InvalidRequest, NotAllowedInThisState, field_error

log = logging.getLogger("services.fulfillment")

SERVICE = "fulfillment"
Tx = psycopg.Connection[Any]

SYSTEM = Actor(type="system", id="fulfillment", name="Fulfillment")


def now() -> datetime:
    return datetime.now(UTC)


def actor_of(actor: Any) -> Actor:
    if isinstance(actor, Actor):
        return actor
    return Actor.model_validate(actor or SYSTEM.model_dump())


@contextmanager
def read(db: Database) -> Iterator[Tx]:
    """A connection for reads that need no transaction (autocommit)."""
    with db.pool.connection() as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            if not (conn.closed or conn.broken):
                conn.autocommit = False


def refuse(exc: domain.Refused, **extra: Any) -> NoReturn:
    """A domain refusal as the client sees it: 409 when the state forbids it, 422 when the request is wrong;
    both name the field."""
    err: DomainError
    if exc.conflict:
        err = NotAllowedInThisState(str(exc), field=exc.field, code=exc.code, **extra)
    else:
        err = InvalidRequest(str(exc), errors=[field_error(exc.field or "body", str(exc), exc.code)], **extra)
    raise err from None


def carrier_failed(exc: CarrierError, what: str) -> NoReturn:
    raise CarrierFailed(f"The carrier could not {what}: {exc}", code=exc.code, retryable=exc.retryable) from None


def emit(tx: Tx, o: domain.FulfillmentOrder, event: ev.FulfillmentEvent | ev.EventModel, causation: str) -> None:
    outbox.emit(tx, SERVICE, event, subject=o.order_id, correlation_id=o.order_id, causation_id=causation)


def base(o: domain.FulfillmentOrder, actor: Actor, at: datetime | None = None) -> dict[str, Any]:
    return {"order_id": o.order_id, "number": o.number, "test": o.test, "at": at or now(), "actor": actor}


def summary(s: domain.Shipment) -> ev.ShipmentSummary:
    return ev.ShipmentSummary(
        shipment_id=s.id, number=s.number, kind=s.kind, shipping_point=s.shipping_point, status=s.status,
        carrier=s.carrier, service=s.service, tracking_number=s.tracking_number, tracking_url=s.tracking_url,
        expected_delivery=s.expected_delivery,
        lines=[ev.LineQuantity(line_id=ln.line_id, sku=ln.sku, quantity=ln.quantity) for ln in s.lines],
    )


def refresh_status(tx: Tx, o: domain.FulfillmentOrder, actor: Actor, causation: str) -> None:
    """Recompute the fulfillment status (``FULFILLMENT_RULES``), save the order, announce a change."""
    previous = o.refresh_status()
    store.save_order(tx, o)
    if previous is None:
        return
    f = o.facts()
    emit(tx, o, ev.FulfillmentStatusChanged(
        **base(o, actor), from_status=previous, to_status=o.status, ordered=f.ordered, handed_over=f.handed_over,
        delivered=f.delivered, returned=f.returned, shipments=[summary(s) for s in o.shipments],
    ), causation)


# ------------------------------------------------------------------------------------------------ stock
class StockRefused(Exception):
    """A level would go negative (the conditional update matched nothing)."""


@dataclass
class _HeldLevels:
    """The stock levels a consumer batch locked at its start (``batch_levels``), kept exact by every reservation
    and movement of the same transaction (which holds the locks until it ends)."""

    levels: dict[str, dict[str, tuple[int, int]]]  # SKU -> location -> (on hand, reserved)
    at: datetime  # the transaction's now(): the time of every movement it writes
    queued: list[tuple[Any, int, int]] = field(default_factory=list)  # reservations sent: (cursor, rows, order)

    def available(self, skus: set[str]) -> dict[tuple[str, str], int]:
        return {(sku, loc): on_hand - reserved for sku in sorted(skus)
                for loc, (on_hand, reserved) in sorted(self.levels[sku].items())}


_held: weakref.WeakKeyDictionary[Tx, _HeldLevels] = weakref.WeakKeyDictionary()


@contextmanager
def batch_levels(tx: Tx, skus: Iterable[str], *, pipelined: bool = True) -> Iterator[None]:
    """Lock the levels of every SKU a consumer batch will reserve, once, in (sku, location) order (two batches
    never deadlock), and apply the batch in pipeline mode: each reservation is planned on the levels held and
    its statement sent without waiting for the answer, which is known (the levels cannot move under the locks)
    and checked at the end of the block. A batch of order.placed then costs a few round trips, not one per
    order. ``pipelined=False`` for a batch of one new order: psycopg's pipeline mode then costs more client CPU
    than the round trips it saves (``bench/fulfillment_placed.py --batch 1`` under eventlet, five alternated
    pairs: 1.14-2.20 ms per event without, 1.29-2.64 with)."""
    found, at = store.lock_level_counts(tx, skus)
    held = _HeldLevels({sku: {} for sku in set(skus)}, at)
    for (sku, location), counts in found.items():
        held.levels[sku][location] = counts
    _held[tx] = held
    try:
        with tx.pipeline() if pipelined else nullcontext():
            yield
            for cursor, rows, number in held.queued:
                if len(cursor.fetchall()) != rows:
                    raise StockRefused(f"order #{number}: a reservation was refused")
    finally:
        _held.pop(tx, None)


def _level_moved(tx: Tx, sku: str, location: str, on_hand: int, reserved: int) -> None:
    held = _held.get(tx)
    if held is not None and sku in held.levels:
        held.levels[sku][location] = (on_hand, reserved)


def move_stock(tx: Tx, sku: str, location: str, delta_on_hand: int, delta_reserved: int, *, reason: str,
               actor: Actor, causation: str, order: domain.FulfillmentOrder | None = None,
               create: bool = False) -> dict[str, Any]:
    """Change one level (conditionally: never negative) with its movement and ``fulfillment.stock_changed``."""
    row = store.change_level(tx, sku, location, delta_on_hand, delta_reserved, reason=reason,
                             actor=actor.model_dump(), order_id=order.order_id if order else None,
                             order_number=order.number if order else None, create=create)
    if row is None:
        raise StockRefused(f"{sku} at {location}: {delta_on_hand:+d} on hand, {delta_reserved:+d} reserved refused")
    _level_moved(tx, sku, location, row["on_hand"], row["reserved"])
    outbox.emit(tx, SERVICE, ev.StockChanged(
        sku=sku, location=location, on_hand=row["on_hand"], reserved=row["reserved"],
        available=row["on_hand"] - row["reserved"], delta_on_hand=delta_on_hand, delta_reserved=delta_reserved,
        reason=reason, order_id=order.order_id if order else None, at=row["at"], actor=actor,
    ), subject=sku, correlation_id=order.order_id if order else sku, causation_id=causation)
    return row


def reserve(tx: Tx, o: domain.FulfillmentOrder, actor: Actor, causation: str, *,
            state: str | None = None) -> domain.Plan | None:
    """Reserve the order's stock-tracked units still unreserved, all or nothing. None: nothing is tracked.

    The levels are locked in (sku, location) order, the plan made on what they hold, and the whole plan
    applied with one conditional statement (levels, a movement per allocation, reservations; with ``state``
    the order's ``reservation`` too, when the plan holds); a refusal there (which the lock makes impossible)
    rolls everything back through the exception. Each allocation is announced (``stock_changed``) as before."""
    counts = {c.line.line_id: c for c in o.counts()}
    skus = {ln.sku for ln in o.lines}
    held = _held.get(tx)
    if held is not None and skus <= held.levels.keys():
        available = held.available(skus)
    else:
        held = None
        available = store.lock_levels(tx, skus)
    tracked = {sku for sku, _loc in available}
    needs = []
    for ln in o.lines:
        if ln.sku not in tracked:
            continue
        c = counts[ln.line_id]
        want = c.ordered - c.handed_over - o.reserved.get(ln.line_id, 0)
        if want > 0:
            needs.append(domain.Need(ln.line_id, ln.sku, want))
    if not tracked:
        return None
    plan = domain.allocate(needs, available)
    if not plan.ok:
        return plan
    reason = f"reserved for order #{o.number}"
    allocations = [(a.line_id, a.sku, a.location, a.quantity) for a in plan.allocations]
    rows: list[dict[str, Any]] | None
    if held is None:
        rows = store.reserve_lines(tx, o.order_id, o.number, allocations, reason=reason, actor=actor.model_dump(),
                                   state=state)
    else:
        cursor = store.queue_reserve_lines(tx, o.order_id, o.number, allocations, reason=reason,
                                           actor=actor.model_dump(), state=state)
        held.queued.append((cursor, len(allocations), o.number))
        rows = []
        for a in plan.allocations:  # what the statement answers, one row per allocation in order
            on_hand, reserved = held.levels[a.sku][a.location]
            held.levels[a.sku][a.location] = (on_hand, reserved + a.quantity)
            rows.append({"on_hand": on_hand, "reserved": reserved + a.quantity, "at": held.at})
    if rows is None:
        raise StockRefused(f"order #{o.number}: a reservation was refused")
    for a, row in zip(plan.allocations, rows, strict=True):
        if held is None:
            _level_moved(tx, a.sku, a.location, row["on_hand"], row["reserved"])
        outbox.emit(tx, SERVICE, ev.StockChanged(
            sku=a.sku, location=a.location, on_hand=row["on_hand"], reserved=row["reserved"],
            available=row["on_hand"] - row["reserved"], delta_on_hand=0, delta_reserved=a.quantity,
            reason=reason, order_id=o.order_id, at=row["at"], actor=actor,
        ), subject=a.sku, correlation_id=o.order_id, causation_id=causation)
        o.reserved[a.line_id] = o.reserved.get(a.line_id, 0) + a.quantity
    return plan


def release(tx: Tx, o: domain.FulfillmentOrder, actor: Actor, causation: str, why: str) -> list[ev.LineQuantity]:
    """Every unit still reserved for the order goes back to available."""
    released: dict[tuple[str, str], int] = {}
    for (line_id, location), q in sorted(store.reservations_of(tx, o.order_id).items(),
                                         key=lambda kv: (o.line(kv[0][0]).sku, kv[0][1])):
        sku = o.line(line_id).sku
        move_stock(tx, sku, location, 0, -q, reason=why, actor=actor, causation=causation, order=o)
        store.change_reservation(tx, o.order_id, line_id, sku, location, -q)
        released[(line_id, sku)] = released.get((line_id, sku), 0) + q
    o.reserved = {}
    return [ev.LineQuantity(line_id=lid, sku=sku, quantity=q) for (lid, sku), q in released.items()]


def consume(tx: Tx, o: domain.FulfillmentOrder, s: domain.Shipment, actor: Actor, causation: str) -> None:
    """The parcel left: its reserved units leave stock (on hand and reserved both go down)."""
    if s.consumed:
        return
    taken = domain.consume(store.reservations_of(tx, o.order_id),
                           [(ln.line_id, ln.sku, ln.quantity) for ln in s.lines], s.location)
    for line_id, sku, location, q in sorted(taken, key=lambda t: (t[1], t[2])):
        move_stock(tx, sku, location, -q, -q, reason=f"shipped in {s.number}", actor=actor, causation=causation,
                   order=o)
        store.change_reservation(tx, o.order_id, line_id, sku, location, -q)
        o.reserved[line_id] = o.reserved.get(line_id, 0) - q
        s.consumed.append(domain.Consumed(line_id, sku, location, q))
    if o.reservation == "reserved" and not any(v > 0 for v in o.reserved.values()):
        o.reservation = "consumed"


def put_back(tx: Tx, o: domain.FulfillmentOrder, s: domain.Shipment, actor: Actor, causation: str, why: str) -> None:
    """The parcel came back (delivery failed, or cancelled after hand-over): the units it took are on hand
    again and reserved for the order again, so the re-shipment consumes them again. An order closed meanwhile
    (cancelled after the parcel left) gets nothing reserved: the units are only back on hand."""
    closed = o.stage in domain.CLOSED_STAGES
    for c in sorted(s.consumed, key=lambda c: (c.sku, c.location)):
        move_stock(tx, c.sku, c.location, c.quantity, 0 if closed else c.quantity, reason=f"{s.number} {why}",
                   actor=actor, causation=causation, order=o)
        if not closed:
            store.change_reservation(tx, o.order_id, c.line_id, c.sku, c.location, c.quantity)
            o.reserved[c.line_id] = o.reserved.get(c.line_id, 0) + c.quantity
    if s.consumed and o.reservation == "consumed" and not closed:
        o.reservation = "reserved"
    s.consumed = []


def move_shipment(tx: Tx, o: domain.FulfillmentOrder, s: domain.Shipment, new: ShipmentStatus, actor: Actor,
                  causation: str, *, source: str, notify: bool = True, reason: str | None = None,
                  description: str | None = None, location: str | None = None, at: datetime | None = None,
                  event_id: str | None = None) -> None:
    """Move a shipment forward (the caller checked the move), with its stock effects, tracking history,
    ``fulfillment.shipment_status_changed`` and the order's recomputed status."""
    old = s.status
    s.status = new
    s.updated_at = now()
    if new in (ShipmentStatus.shipped, ShipmentStatus.in_transit, ShipmentStatus.out_for_delivery,
               ShipmentStatus.delivered):
        consume(tx, o, s, actor, causation)
    elif new in (ShipmentStatus.delivery_failed, ShipmentStatus.canceled):
        put_back(tx, o, s, actor, causation, "came back" if new is ShipmentStatus.delivery_failed else "cancelled")
    store.update_shipment(tx, s)
    store.add_tracking(tx, s.id, new, at or s.updated_at, source=source, applied=True,
                       description=description or reason, location=location, event_id=event_id)
    emit(tx, o, ev.ShipmentStatusChanged(**base(o, actor), shipment=summary(s), from_status=old, to_status=new,
                                         notify_customer=notify, reason=reason), causation)
    refresh_status(tx, o, actor, causation)


def line_quantities(lines: Mapping[tuple[str, str], int]) -> list[ev.LineQuantity]:
    return [ev.LineQuantity(line_id=lid, sku=sku, quantity=q) for (lid, sku), q in lines.items()]
