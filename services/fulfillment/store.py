"""SQL for the ``fulfillment`` schema. Only this module knows the table layout.

``load`` builds a :class:`~services.fulfillment.domain.FulfillmentOrder` (the order's copy, its shipments with
their lines, its returns, what is reserved for it); the writes are explicit, one function per thing that
changes, called by the use cases inside their transaction. Stock levels change only through
:func:`change_level`: one conditional statement, so the database refuses what would go negative.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from services.fulfillment import domain
from services.fulfillment.contracts.vocabulary import FulfillmentStatus, ShipmentKind, ShipmentStatus, ShippingPoint
from services.orders.contracts.schemas import Stage
from shared.errors import NotFound

Tx = psycopg.Connection[Any]


def as_uuid(value: UUID | str) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ orders
def insert_order(tx: Tx, row: Mapping[str, Any]) -> bool:
    """The order's copy from ``order.placed``; False if it was there already (a redelivery)."""
    return bool(insert_orders(tx, [row]))


_ORDER_COPY_COLUMNS = ("order_id, number, test, stage, channel, currency, items, subtotal, shipping, discount, tax,"
                       " total, customer, address, payment_method, customer_note, placed_at")


def _json_value(value: Any) -> Any:
    """A column's value as JSON that Postgres reads back exactly: Decimal, UUID and datetime as their text."""
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def insert_orders(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> set[UUID]:
    """The copies of these orders (``order.placed``), in one statement: the ids of those written (not those
    there already). The rows go as one JSON array read by ``jsonb_populate_recordset`` (the table's own row
    type converts each value with its column's input function): a pipelined ``executemany`` cost a command and
    a wait per row, 18 % of the fulfillment process's GIL-holding samples during card orders (py-spy --gil)."""
    if not rows:
        return set()
    document = [{k: _json_value(v) for k, v in row.items()} for row in rows]
    found = tx.execute(
        f"INSERT INTO fulfillment_orders ({_ORDER_COPY_COLUMNS}) SELECT {_ORDER_COPY_COLUMNS}"
        " FROM jsonb_populate_recordset(NULL::fulfillment_orders, %s) ON CONFLICT (order_id) DO NOTHING"
        " RETURNING order_id",
        (Jsonb(document),),
    ).fetchall()
    return {r["order_id"] for r in found}


def order_row(tx: Tx, order_id: UUID | str, *, for_update: bool = False) -> dict[str, Any] | None:
    oid = as_uuid(order_id)
    if oid is None:
        return None
    sql = "SELECT * FROM fulfillment_orders WHERE order_id = %s" + (" FOR UPDATE" if for_update else "")
    row = tx.execute(sql, (oid,)).fetchone()
    return dict(row) if row else None


def find(tx: Tx, order_id: UUID | str, *, for_update: bool = False) -> domain.FulfillmentOrder | None:
    """The order's fulfillment, or None if fulfillment never saw it placed. ``for_update`` locks the order's row
    first (a statement of its own, so the reads after it see what the transaction it waited for wrote)."""
    row = order_row(tx, order_id, for_update=for_update)
    if row is None:
        return None
    oid = row["order_id"]
    lines = tuple(
        domain.OrderLine(str(i["line_id"]), str(i["sku"]), str(i.get("name") or ""), int(i["quantity"]),
                         Decimal(str(i["unit_price"])), Decimal(str(i["line_total"])))
        for i in row["items"]
    )
    reserved: dict[str, int] = {}
    for r in tx.execute("SELECT line_id, quantity FROM reservations WHERE order_id = %s", (oid,)).fetchall():
        reserved[r["line_id"]] = reserved.get(r["line_id"], 0) + int(r["quantity"])
    o = domain.FulfillmentOrder(
        order_id=str(oid), number=int(row["number"]), test=bool(row["test"]), stage=Stage(row["stage"]),
        currency=row["currency"], lines=lines, status=FulfillmentStatus(row["fulfillment_status"]),
        packed=bool(row["packed"]), reservation=row["reservation"], shipments=shipments_of(tx, oid),
        returns=returns_of(tx, oid), reserved=reserved,
        tracked_skus=frozenset(tracked_skus(tx, {ln.sku for ln in lines})),
    )
    return o


def load(tx: Tx, order_id: UUID | str, *, for_update: bool = False) -> domain.FulfillmentOrder:
    found = find(tx, order_id, for_update=for_update)
    if found is None:
        raise NotFound(f"Fulfillment knows no order {order_id} (yet): give the id of a placed order.",
                       order_id=str(order_id))
    return found


def save_order(tx: Tx, o: domain.FulfillmentOrder) -> None:
    tx.execute(
        "UPDATE fulfillment_orders SET stage = %s, packed = %s, fulfillment_status = %s, reservation = %s,"
        " updated_at = now() WHERE order_id = %s",
        (o.stage.value, o.packed, o.status.value, o.reservation, UUID(o.order_id)),
    )


def set_fields(tx: Tx, order_id: UUID, **fields: Any) -> None:
    """Copy fields the orders service changed (stage, address, customer)."""
    names = sorted(fields)
    values = [Jsonb(fields[n]) if isinstance(fields[n], dict | list) else fields[n] for n in names]
    sets = ", ".join(f"{n} = %s" for n in names)
    tx.execute(f"UPDATE fulfillment_orders SET {sets}, updated_at = now() WHERE order_id = %s",  # noqa: S608
               (*values, order_id))


def assign_invoice_number(tx: Tx, order_id: UUID) -> str:
    """The order's invoice number, assigned from the sequence at the first call and kept."""
    row = tx.execute(
        "UPDATE fulfillment_orders SET invoice_number = coalesce(invoice_number,"
        " 'INV-' || lpad(nextval('invoice_numbers')::text, 6, '0')) WHERE order_id = %s RETURNING invoice_number",
        (order_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"Fulfillment knows no order {order_id}.", order_id=str(order_id))
    return str(row["invoice_number"])


# ------------------------------------------------------------------------------------------------ shipments
_SHIPMENTS = (
    "SELECT s.*, (SELECT coalesce(json_agg(json_build_object('line_id', l.line_id, 'sku', l.sku,"
    " 'quantity', l.quantity) ORDER BY l.line_id), '[]') FROM shipment_lines l WHERE l.shipment_id = s.id) AS lines"
    " FROM shipments s"
)


def _shipment(row: Mapping[str, Any]) -> domain.Shipment:
    return domain.Shipment(
        id=str(row["id"]), order_id=str(row["order_id"]), rank=int(row["rank"]), number=row["number"],
        kind=ShipmentKind(row["kind"]), shipping_point=ShippingPoint(row["shipping_point"]),
        status=ShipmentStatus(row["status"]), location=row["location"],
        lines=[domain.ShipmentLine(str(ln["line_id"]), str(ln["sku"]), int(ln["quantity"])) for ln in row["lines"]],
        created_at=row["created_at"], updated_at=row["updated_at"], carrier=row["carrier"], service=row["service"],
        tracking_number=row["tracking_number"], tracking_url=row["tracking_url"],
        expected_delivery=row["expected_delivery"], label_id=row["label_id"], label_cost=row["label_cost"],
        label_currency=row["label_currency"],
        consumed=[domain.Consumed(c["line_id"], c["sku"], c["location"], int(c["quantity"]))
                  for c in row["consumed"]],
    )


def shipments_of(tx: Tx, order_id: UUID) -> list[domain.Shipment]:
    rows = tx.execute(_SHIPMENTS + " WHERE s.order_id = %s ORDER BY s.rank", (order_id,)).fetchall()
    return [_shipment(r) for r in rows]


def shipment_order_id(tx: Tx, shipment_id: UUID | str) -> UUID | None:
    sid = as_uuid(shipment_id)
    if sid is None:
        return None
    row = tx.execute("SELECT order_id FROM shipments WHERE id = %s", (sid,)).fetchone()
    return row["order_id"] if row else None


def shipment_by_tracking(tx: Tx, tracking_number: str, label_id: str | None) -> tuple[UUID, UUID] | None:
    """(shipment id, order id) of a carrier shipment by its label id or tracking number."""
    row = tx.execute(
        "SELECT id, order_id FROM shipments WHERE label_id = %(label)s::text OR tracking_number = %(tn)s::text"
        " ORDER BY (label_id = %(label)s::text) DESC NULLS LAST LIMIT 1",
        {"label": label_id, "tn": tracking_number},
    ).fetchone()
    return (row["id"], row["order_id"]) if row else None


def insert_shipment(tx: Tx, s: domain.Shipment) -> None:
    tx.execute(
        "INSERT INTO shipments (id, order_id, rank, number, kind, shipping_point, status, location, carrier, service,"
        " tracking_number, tracking_url, expected_delivery, label_id, label_cost, label_currency, consumed,"
        " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (UUID(s.id), UUID(s.order_id), s.rank, s.number, s.kind.value, s.shipping_point.value, s.status.value,
         s.location, s.carrier, s.service, s.tracking_number, s.tracking_url, s.expected_delivery, s.label_id,
         s.label_cost, s.label_currency, Jsonb(_consumed(s)), s.created_at, s.updated_at),
    )
    with tx.cursor() as cur:
        cur.executemany("INSERT INTO shipment_lines (shipment_id, line_id, sku, quantity) VALUES (%s, %s, %s, %s)",
                        [(UUID(s.id), ln.line_id, ln.sku, ln.quantity) for ln in s.lines])


def update_shipment(tx: Tx, s: domain.Shipment) -> None:
    tx.execute(
        "UPDATE shipments SET status = %s, carrier = %s, service = %s, tracking_number = %s, tracking_url = %s,"
        " expected_delivery = %s, consumed = %s, updated_at = %s WHERE id = %s",
        (s.status.value, s.carrier, s.service, s.tracking_number, s.tracking_url, s.expected_delivery,
         Jsonb(_consumed(s)), s.updated_at, UUID(s.id)),
    )


def _consumed(s: domain.Shipment) -> list[dict[str, Any]]:
    return [{"line_id": c.line_id, "sku": c.sku, "location": c.location, "quantity": c.quantity} for c in s.consumed]


def add_tracking(tx: Tx, shipment_id: str, status: ShipmentStatus, at: datetime, *, source: str, applied: bool,
                 description: str | None = None, location: str | None = None, event_id: str | None = None) -> bool:
    """Record a tracking update; False if this carrier event id was recorded already (a redelivery)."""
    cur = tx.execute(
        "INSERT INTO tracking_events (shipment_id, status, at, description, location, source, applied, event_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
        (UUID(shipment_id), status.value, at, description, location, source, applied, event_id),
    )
    return cur.rowcount == 1


def tracking_of(tx: Tx, shipment_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {sid: [] for sid in shipment_ids}
    if not shipment_ids:
        return out
    rows = tx.execute("SELECT * FROM tracking_events WHERE shipment_id = ANY(%s) ORDER BY id",
                      ([UUID(s) for s in shipment_ids],)).fetchall()
    for r in rows:
        out[str(r["shipment_id"])].append(dict(r))
    return out


def label_purchase(tx: Tx, order_id: UUID, key: str) -> UUID | None:
    row = tx.execute("SELECT shipment_id FROM label_purchases WHERE order_id = %s AND idempotency_key = %s",
                     (order_id, key)).fetchone()
    return row["shipment_id"] if row else None


def record_label_purchase(tx: Tx, order_id: UUID, key: str, shipment_id: str) -> None:
    tx.execute("INSERT INTO label_purchases (order_id, idempotency_key, shipment_id) VALUES (%s, %s, %s)",
               (order_id, key, UUID(shipment_id)))


# ------------------------------------------------------------------------------------------------ returns
def returns_of(tx: Tx, order_id: UUID) -> list[domain.OrderReturn]:
    rows = tx.execute(
        "SELECT r.*, (SELECT json_agg(json_build_object('line_id', l.line_id, 'sku', l.sku, 'quantity', l.quantity,"
        " 'restock', l.restock, 'location', l.location) ORDER BY l.position) FROM return_lines l"
        " WHERE l.return_id = r.id) AS lines FROM returns r WHERE r.order_id = %s ORDER BY r.at, r.id",
        (order_id,),
    ).fetchall()
    return [
        domain.OrderReturn(
            id=str(r["id"]),
            lines=tuple(domain.ReturnLine(str(ln["line_id"]), str(ln["sku"]), int(ln["quantity"]), bool(ln["restock"]),
                                          str(ln["location"])) for ln in (r["lines"] or [])),
            reason=r["reason"], actor=dict(r["actor"]), at=r["at"],
        )
        for r in rows
    ]


def insert_return(tx: Tx, order_id: str, r: domain.OrderReturn) -> None:
    tx.execute("INSERT INTO returns (id, order_id, reason, actor, at) VALUES (%s, %s, %s, %s, %s)",
               (UUID(r.id), UUID(order_id), r.reason, Jsonb(r.actor), r.at))
    with tx.cursor() as cur:
        cur.executemany(
            "INSERT INTO return_lines (return_id, position, line_id, sku, quantity, restock, location)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(UUID(r.id), i, ln.line_id, ln.sku, ln.quantity, ln.restock, ln.location) for i, ln in enumerate(r.lines)],
        )


# ------------------------------------------------------------------------------------------------ stock
def tracked_skus(tx: Tx, skus: Iterable[str]) -> set[str]:
    """The SKUs among ``skus`` that are stock-tracked: they have a level at some location."""
    wanted = sorted(set(skus))
    if not wanted:
        return set()
    rows = tx.execute("SELECT DISTINCT sku FROM stock_levels WHERE sku = ANY(%s)", (wanted,)).fetchall()
    return {r["sku"] for r in rows}


def lock_levels(tx: Tx, skus: Iterable[str]) -> dict[tuple[str, str], int]:
    """Lock every level of these SKUs (in (sku, location) order, so two transactions never deadlock on them)
    and answer the units available (on hand - reserved) at each."""
    wanted = set(skus)
    if not wanted:
        return {}
    levels, _at = lock_level_counts(tx, wanted)
    return {key: on_hand - reserved for key, (on_hand, reserved) in levels.items()}


def change_level(tx: Tx, sku: str, location: str, delta_on_hand: int, delta_reserved: int, *,
                 reason: str, actor: Mapping[str, Any], order_id: UUID | str | None = None,
                 order_number: int | None = None, create: bool = False) -> dict[str, Any] | None:
    """Move a level by the deltas and write the movement, in one statement. The update is conditional (the
    level stays >= 0, reserved within on hand), so it answers None instead of ever going negative; with
    ``create`` a missing level is created first (stock received for a new SKU or location)."""
    if create:
        tx.execute("INSERT INTO stock_levels (sku, location) VALUES (%s, %s) ON CONFLICT DO NOTHING", (sku, location))
    row = tx.execute(
        "WITH u AS (UPDATE stock_levels SET on_hand = on_hand + %(don)s, reserved = reserved + %(dres)s,"
        "   updated_at = now()"
        "   WHERE sku = %(sku)s AND location = %(loc)s AND on_hand + %(don)s >= 0 AND reserved + %(dres)s >= 0"
        "     AND on_hand + %(don)s - (reserved + %(dres)s) >= 0"
        "   RETURNING sku, location, on_hand, reserved, updated_at),"
        " m AS (INSERT INTO stock_movements (movement_id, sku, location, delta_on_hand, delta_reserved,"
        "   on_hand_after, reserved_after, reason, order_id, order_number, actor)"
        "   SELECT %(mid)s, sku, location, %(don)s, %(dres)s, on_hand, reserved, %(reason)s, %(oid)s, %(num)s,"
        "   %(actor)s FROM u RETURNING at)"
        " SELECT u.*, m.at FROM u, m",
        {"don": delta_on_hand, "dres": delta_reserved, "sku": sku, "loc": location, "mid": uuid.uuid4(),
         "reason": reason, "oid": as_uuid(order_id) if order_id else None, "num": order_number,
         "actor": Jsonb(dict(actor))},
    ).fetchone()
    return dict(row) if row else None


_RESERVE = (
    "WITH v AS ("
    "  SELECT * FROM unnest(%(ords)s::int[], %(lines)s::text[], %(skus)s::text[], %(locs)s::text[], %(qs)s::bigint[],"
    "                       %(mids)s::uuid[]) AS v(ord, line_id, sku, location, q, mid)"
    "), lv AS (SELECT sku, location, sum(q) AS q FROM v GROUP BY sku, location"
    "), u AS ("
    "  UPDATE stock_levels s SET reserved = s.reserved + lv.q, updated_at = now() FROM lv"
    "  WHERE s.sku = lv.sku AND s.location = lv.location AND s.on_hand - (s.reserved + lv.q) >= 0"
    "  RETURNING s.sku, s.location, s.on_hand, s.reserved"
    "), mv AS ("
    "  SELECT v.*, u.on_hand, u.reserved - coalesce(sum(v.q) OVER (PARTITION BY v.sku, v.location ORDER BY v.ord"
    "    ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0) AS reserved_after"
    "  FROM v JOIN u USING (sku, location)"
    "), m AS ("
    "  INSERT INTO stock_movements (movement_id, sku, location, delta_on_hand, delta_reserved, on_hand_after,"
    "    reserved_after, reason, order_id, order_number, actor)"
    "  SELECT mid, sku, location, 0, q, on_hand, reserved_after, %(reason)s, %(oid)s, %(num)s, %(actor)s"
    "  FROM mv ORDER BY ord RETURNING movement_id, at"
    "), r AS ("
    "  INSERT INTO reservations AS r (order_id, line_id, sku, location, quantity)"
    "  SELECT %(oid)s, line_id, sku, location, sum(q) FROM v"
    "  WHERE (SELECT count(*) FROM u) = (SELECT count(*) FROM lv) GROUP BY line_id, sku, location"
    "  ON CONFLICT (order_id, line_id, location) DO UPDATE SET quantity = r.quantity + excluded.quantity,"
    "    updated_at = now()"
    "), o AS ("
    "  UPDATE fulfillment_orders SET reservation = %(state)s, updated_at = now()"
    "  WHERE order_id = %(oid)s AND %(state)s::text IS NOT NULL"
    "  AND (SELECT count(*) FROM u) = (SELECT count(*) FROM lv)"
    ") "
    "SELECT mv.ord, mv.on_hand, mv.reserved_after AS reserved, m.at FROM mv JOIN m ON m.movement_id = mv.mid"
    " ORDER BY mv.ord"
)


def lock_level_counts(tx: Tx, skus: Iterable[str]) -> tuple[dict[tuple[str, str], tuple[int, int]], datetime]:
    """``lock_levels``, answering (on hand, reserved) at each level, and the transaction's time (``now()``: what
    every movement of the transaction is stamped with)."""
    wanted = sorted(set(skus))
    row = tx.execute(
        "SELECT now() AS at" if not wanted else
        "SELECT now() AS at, coalesce((SELECT jsonb_agg(jsonb_build_array(sku, location, on_hand, reserved))"
        " FROM (SELECT sku, location, on_hand, reserved FROM stock_levels WHERE sku = ANY(%s)"
        "       ORDER BY sku, location FOR UPDATE) l), '[]') AS levels",
        (wanted,) if wanted else None,
    ).fetchone()
    assert row is not None
    levels = {(sku, loc): (int(on_hand), int(reserved)) for sku, loc, on_hand, reserved in row.get("levels", [])}
    return levels, row["at"]


def queue_reserve_lines(tx: Tx, order_id: UUID | str, order_number: int,
                        allocations: Sequence[tuple[str, str, str, int]], *, reason: str, actor: Mapping[str, Any],
                        state: str | None = None) -> psycopg.Cursor[Any]:
    """``reserve_lines`` without waiting for its answer: in pipeline mode the statement is only queued. The
    caller reads the cursor later (one row per allocation, or fewer if a level refused)."""
    return tx.execute(_RESERVE, _reserve_params(order_id, order_number, allocations, reason, actor, state))


def _reserve_params(order_id: UUID | str, order_number: int, allocations: Sequence[tuple[str, str, str, int]],
                    reason: str, actor: Mapping[str, Any], state: str | None) -> dict[str, Any]:
    return {
        "ords": list(range(len(allocations))), "lines": [a[0] for a in allocations],
        "skus": [a[1] for a in allocations], "locs": [a[2] for a in allocations],
        "qs": [a[3] for a in allocations], "mids": [uuid.uuid4() for _ in allocations],
        "reason": reason, "oid": as_uuid(order_id), "num": order_number, "actor": Jsonb(dict(actor)), "state": state,
    }


def reserve_lines(tx: Tx, order_id: UUID | str, order_number: int, allocations: Sequence[tuple[str, str, str, int]],
                  *, reason: str, actor: Mapping[str, Any], state: str | None = None) -> list[dict[str, Any]] | None:
    """Reserve an order's allocations (line id, sku, location, quantity) with ONE statement: each level moves by
    the sum reserved at it (conditionally: never beyond on hand), each allocation gets its movement (in the
    order given, each with the level as it stands after it, as one ``change_level`` per allocation would
    write) and the reservations grow; with ``state`` the order's ``reservation`` becomes it. Answers one row
    per allocation (on_hand, reserved after it, at), or None if some level refused (nothing of the order's
    reservations nor state was written then, but the caller must roll back the levels that moved)."""
    if not allocations:
        return []
    rows = tx.execute(_RESERVE, _reserve_params(order_id, order_number, allocations, reason, actor, state)).fetchall()
    if len(rows) != len(allocations):
        return None
    return [dict(r) for r in rows]


def level(tx: Tx, sku: str, location: str) -> dict[str, Any] | None:
    row = tx.execute("SELECT * FROM stock_levels WHERE sku = %s AND location = %s", (sku, location)).fetchone()
    return dict(row) if row else None


def levels_of(tx: Tx, skus: Sequence[str], location: str | None = None) -> list[dict[str, Any]]:
    rows = tx.execute(
        "SELECT * FROM stock_levels WHERE sku = ANY(%s) AND (%s::text IS NULL OR location = %s)"
        " ORDER BY sku, location", (list(skus), location, location)).fetchall()
    return [dict(r) for r in rows]


def stock_skus(tx: Tx, *, sku: str | None, location: str | None, low: int | None, limit: int,
               after: str | None) -> list[str]:
    """SKUs with a level, by name, for a page of the stock list (``low``: some location has at most that many
    units available)."""
    rows = tx.execute(
        "SELECT sku FROM stock_levels WHERE (%(sku)s::text IS NULL OR sku = %(sku)s)"
        " AND (%(loc)s::text IS NULL OR location = %(loc)s) AND (%(after)s::text IS NULL OR sku > %(after)s)"
        " GROUP BY sku HAVING (%(low)s::bigint IS NULL OR min(on_hand - reserved) <= %(low)s)"
        " ORDER BY sku LIMIT %(limit)s",
        {"sku": sku, "loc": location, "after": after, "low": low, "limit": limit},
    ).fetchall()
    return [r["sku"] for r in rows]


def movements(tx: Tx, sku: str, limit: int) -> list[dict[str, Any]]:
    rows = tx.execute("SELECT * FROM stock_movements WHERE sku = %s ORDER BY id DESC LIMIT %s",
                      (sku, limit)).fetchall()
    return [dict(r) for r in rows]


def reservations_of(tx: Tx, order_id: UUID | str) -> dict[tuple[str, str], int]:
    """(line id, location) -> units reserved now for the order."""
    rows = tx.execute("SELECT line_id, location, quantity FROM reservations WHERE order_id = %s AND quantity > 0",
                      (as_uuid(order_id),)).fetchall()
    return {(r["line_id"], r["location"]): int(r["quantity"]) for r in rows}


def change_reservation(tx: Tx, order_id: UUID | str, line_id: str, sku: str, location: str, delta: int) -> None:
    if delta < 0:  # an INSERT of a negative row would fail its CHECK before ON CONFLICT is considered
        tx.execute("UPDATE reservations SET quantity = quantity + %s, updated_at = now()"
                   " WHERE order_id = %s AND line_id = %s AND location = %s",
                   (delta, as_uuid(order_id), line_id, location))
        return
    tx.execute(
        "INSERT INTO reservations AS r (order_id, line_id, sku, location, quantity) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (order_id, line_id, location) DO UPDATE SET quantity = r.quantity + excluded.quantity,"
        " updated_at = now()",
        (as_uuid(order_id), line_id, sku, location, delta),
    )


def reservation_totals(tx: Tx, *, lock: bool) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """(recorded ``reserved`` per level, sum of reservations per level); ``lock`` locks every level first."""
    levels = tx.execute("SELECT sku, location, reserved FROM stock_levels ORDER BY sku, location"
                        + (" FOR UPDATE" if lock else "")).fetchall()
    sums = tx.execute("SELECT sku, location, sum(quantity) AS q FROM reservations GROUP BY sku, location").fetchall()
    return ({(r["sku"], r["location"]): int(r["reserved"]) for r in levels},
            {(r["sku"], r["location"]): int(r["q"]) for r in sums if int(r["q"])})

