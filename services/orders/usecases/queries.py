"""Reading orders: one order's detail, the order list (filters, sort, cursor), and the stage machine."""

from __future__ import annotations

from typing import Any

from services.orders import store
from services.orders.contracts.schemas import OrderQuery
from services.orders.contracts.stages import status_machine_table
from services.orders.usecases import views
from services.orders.usecases.common import detail
from shared.db import Database
from shared.errors import parse


def get_order(db: Database, ref: str) -> dict[str, Any]:
    with db.transaction() as tx:
        return detail(*store.load_with_history(tx, ref))


def list_orders(db: Database, query: Any) -> dict[str, Any]:
    q = parse(OrderQuery, query or {}, "query")
    with db.transaction() as tx:
        orders, next_cursor = store.list_orders(tx, q)
    return views.order_page(orders, next_cursor).model_dump(mode="json")


EXPORT_COUNT_CAP = 1_000_000


def count_orders(db: Database, query: Any) -> dict[str, Any]:
    """How many orders the list's filters match (``{"count": n, "capped": bool}``), for an export's progress."""
    q = parse(OrderQuery, query or {}, "query")
    with db.transaction() as tx:
        n, capped = store.count_orders(tx, q, EXPORT_COUNT_CAP)
    return {"count": n, "capped": capped}


def status_machine() -> dict[str, Any]:
    """Every stage, what it means and where it can move to (the contract's table)."""
    return status_machine_table()
