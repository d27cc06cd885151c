"""Stock: levels per SKU per location set and adjusted by staff (with a reason, kept as movements), the
movement history, retrying an order's reservation after a restock, and the reconciliation of ``reserved``
against the reservations.
"""

from __future__ import annotations

from typing import Any

from services.fulfillment import domain, store
from services.fulfillment.contracts.errors import OutOfStockError
from services.fulfillment.contracts.schemas import (
    AdjustStock,
    MovementList,
    ReconcileDrift,
    ReconcileReport,
    SetStock,
    Sku,
    StockList,
)
from services.fulfillment.usecases import views
from services.fulfillment.usecases.common import (
    SYSTEM,
    StockRefused,
    actor_of,
    move_stock,
    now,
    read,
    refuse,
)
from services.fulfillment.usecases.order_events import reserve_order
from shared.db import Database
from shared.errors import InvalidRequest, NotAllowedInThisState, NotFound, field_error, parse

LOW_STOCK = 5
"""``low=true`` lists SKUs with at most this many units available at some location."""


def _sku(sku: str) -> str:
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(Sku).validate_python(sku)
    except ValidationError:
        raise InvalidRequest("The SKU must be 1 to 100 characters.",
                             errors=[field_error("sku", "1 to 100 characters", "invalid_sku", "path")]) from None


def list_stock(db: Database, sku: str | None = None, location: str | None = None, low: bool = False,
               limit: int = 100, after: str | None = None) -> dict[str, Any]:
    limit = max(1, min(int(limit), 500))
    with read(db) as tx:
        skus = store.stock_skus(tx, sku=sku, location=location, low=LOW_STOCK if low else None, limit=limit + 1,
                                after=after)
        page = skus[:limit]
        rows = store.levels_of(tx, page, location)
    items = views.stock_items(page, rows)
    return StockList(items=items, next_after=page[-1] if len(skus) > limit else None).model_dump(mode="json")


def _item(tx: Any, sku: str) -> dict[str, Any]:
    return views.stock_items([sku], store.levels_of(tx, [sku]))[0].model_dump(mode="json")


def set_stock(db: Database, sku: str, command: Any, actor: Any) -> dict[str, Any]:
    """A stock take: on hand := the count. Never below what is reserved (409 naming on_hand)."""
    sku = _sku(sku)
    cmd = parse(SetStock, command, "stock count")
    who = actor_of(actor)
    with db.transaction() as tx:
        tx.execute("INSERT INTO stock_levels (sku, location) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                   (sku, cmd.location))
        level = tx.execute("SELECT on_hand, reserved FROM stock_levels WHERE sku = %s AND location = %s FOR UPDATE",
                           (sku, cmd.location)).fetchone()
        assert level is not None
        if cmd.on_hand < level["reserved"]:
            raise NotAllowedInThisState(
                f"{sku} at {cmd.location} has {level['reserved']} unit(s) reserved for orders; on hand cannot be "
                f"set below that.", field="on_hand", reserved=int(level["reserved"]))
        delta = cmd.on_hand - int(level["on_hand"])
        if delta:
            move_stock(tx, sku, cmd.location, delta, 0, reason=cmd.reason, actor=who, causation=f"stock:{sku}")
        elif int(level["on_hand"]) == 0 and level["reserved"] == 0:
            # a new level counted at 0: record the count all the same, so the history says who started it
            move_stock(tx, sku, cmd.location, 0, 0, reason=cmd.reason, actor=who, causation=f"stock:{sku}")
        return _item(tx, sku)


def adjust_stock(db: Database, sku: str, command: Any, actor: Any) -> dict[str, Any]:
    """Received (+) or lost (-) units. Never below what is reserved: 409 naming delta."""
    sku = _sku(sku)
    cmd = parse(AdjustStock, command, "stock adjustment")
    who = actor_of(actor)
    with db.transaction() as tx:
        if cmd.delta < 0 and store.level(tx, sku, cmd.location) is None:
            raise NotFound(f"{sku} has no stock at {cmd.location}.", sku=sku, location=cmd.location)
        try:
            move_stock(tx, sku, cmd.location, cmd.delta, 0, reason=cmd.reason, actor=who, causation=f"stock:{sku}",
                       create=cmd.delta > 0)
        except StockRefused:
            row = store.level(tx, sku, cmd.location) or {"on_hand": 0, "reserved": 0}
            raise OutOfStockError(
                f"{sku} at {cmd.location} has {row['on_hand']} on hand and {row['reserved']} reserved: removing "
                f"{-cmd.delta} would leave less than what is reserved.", field="delta",
                on_hand=int(row["on_hand"]), reserved=int(row["reserved"])) from None
        return _item(tx, sku)


def stock_movements(db: Database, sku: str, limit: int = 100) -> dict[str, Any]:
    sku = _sku(sku)
    with read(db) as tx:
        rows = store.movements(tx, sku, max(1, min(int(limit), 1000)))
    return MovementList(items=[views.movement(r) for r in rows]).model_dump(mode="json")


def retry_reservation(db: Database, order_id: str, actor: Any) -> dict[str, Any]:
    """After a restock: reserve the order's units again (all or nothing). Answers the fulfillment view; its
    ``reservation`` says whether it worked (``out_of_stock`` again: still short, and announced again)."""
    who = actor_of(actor)
    with db.transaction() as tx:
        o = store.load(tx, order_id, for_update=True)
        if o.stage in domain.CLOSED_STAGES:
            refuse(domain.Refused(f"Order #{o.number} is {o.stage.value}: nothing to reserve.", field="order_stage",
                                  code="order_closed"), order_id=o.order_id)
        if o.reservation != "out_of_stock":
            refuse(domain.Refused(f"Order #{o.number} is not short of stock (reservation: {o.reservation}).",
                                  field="reservation", code="not_out_of_stock"), order_id=o.order_id)
        reserve_order(tx, o, who, f"retry:{order_id}:{now().isoformat()}")
        return views.fulfillment(tx, store.load(tx, order_id)).model_dump(mode="json")


def reconcile(db: Database, fix: bool = False, actor: Any = None) -> ReconcileReport:
    """Recompute every level's ``reserved`` from the reservations and report the levels that differ; with
    ``fix`` set them to the reservations' sum (each correction is a movement)."""
    who = actor_of(actor or SYSTEM.model_dump())
    with db.transaction() as tx:
        recorded, sums = store.reservation_totals(tx, lock=fix)
        drifts = domain.drift(recorded, sums)
        if fix:
            for sku, location, _was, should in drifts:
                store.set_reserved(tx, sku, location, should, reason="reconciliation: reserved := reservations",
                                   actor=who.model_dump())
    return ReconcileReport(
        checked=len(recorded),
        drift=[ReconcileDrift(sku=s, location=loc, recorded_reserved=r, reservations_total=t)
               for s, loc, r, t in drifts],
        fixed=bool(fix and drifts),
    )


def reconcile_stock(db: Database, fix: bool = False) -> dict[str, Any]:
    return reconcile(db, fix).model_dump(mode="json")
