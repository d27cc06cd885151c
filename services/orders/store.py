"""SQL for the ``orders`` schema: load and save orders, their history, lists and search.

The whole ``Order`` lives in ``doc`` (its stored form, mapped field by field in ``services.orders.document``);
the other columns exist so Postgres can filter, search and sort without reading the documents. Searches read
``order_search``, a narrow copy of those columns and the search key that triggers keep in step with every write
of ``orders`` (migration 0007); a whole SKU or e-mail address is looked up in ``order_token`` (0008, likewise
kept by triggers): nothing here writes them. Only this module knows the table layout.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from services.orders import document
from services.orders.contracts.schemas import MANUAL_PAYMENT_METHODS, OrderQuery
from services.orders.domain import HistoryRecord, Order, order_number_from_search
from shared.errors import InvalidRequest, NotFound, field_error

Tx = psycopg.Connection[Any]

_COLUMNS = (
    "id, number, channel, stage, test, currency, total, customer_name, customer_phone, customer_email, "
    "search_text, payment_method, payment_status, paid_at, placed_at, updated_at, version, doc"
)


def next_number(tx: Tx, idempotency_key: str | None = None) -> tuple[int, tuple[Order, str | None] | None]:
    """A new order number and, in the same round trip, the order an idempotency key already placed."""
    row = tx.execute(
        "SELECT nextval('order_number_seq') AS n, o.doc::text AS doc, o.request_hash "
        "FROM (SELECT 1) one LEFT JOIN orders o ON o.idempotency_key = %s",
        (idempotency_key,),
    ).fetchone()
    assert row is not None
    existing = (document.from_json(row["doc"]), row["request_hash"]) if row["doc"] else None
    return int(row["n"]), existing


def _search_text(order: Order) -> str:
    c = order.customer
    phone_digits = re.sub(r"\D", "", c.phone or "")
    parts = [c.name.lower(), phone_digits, (c.email or "").lower(), *(i.sku.lower() for i in order.items)]
    return " ".join(p for p in parts if p)


def next_numbers(tx: Tx, keys: Sequence[str | None]) -> tuple[list[int], dict[str, tuple[Order, str | None]]]:
    """Order numbers for a batch, and the orders its idempotency keys already placed: one round trip."""
    wanted = [k for k in keys if k]
    row = tx.execute(
        "SELECT (SELECT array_agg(nextval('order_number_seq')) FROM generate_series(1, %s)) AS numbers, "
        "(SELECT json_agg(json_build_array(idempotency_key, doc, request_hash)) FROM orders "
        " WHERE idempotency_key = ANY(%s::text[])) AS existing",
        (len(keys), wanted),
    ).fetchone()
    assert row is not None
    existing = {key: (document.from_doc(doc), request_hash) for key, doc, request_hash in row["existing"] or ()}
    return [int(n) for n in row["numbers"]], existing


def _row(order: Order) -> tuple[Any, ...]:
    return (
        order.id,
        order.number,
        order.channel.value,
        order.stage.value,
        order.test,
        order.currency,
        order.totals.total,
        order.customer.name,
        order.customer.phone,
        order.customer.email,
        _search_text(order),
        order.payment_method.value if order.payment_method else None,
        order.payment_status,
        order.paid_at,
        order.placed_at,
        order.updated_at,
        order.version,
        document.to_json(order),
    )


def insert(tx: Tx, order: Order, idempotency_key: str | None = None, request_hash: str | None = None) -> None:
    tx.execute(
        f"INSERT INTO orders ({_COLUMNS}, idempotency_key, request_hash) VALUES ({', '.join(['%s'] * 18)}, %s, %s)",
        (*_row(order), idempotency_key, request_hash),
    )


# Postgres types of ``_row``'s columns, in order, for the arrays of the set-based statements; the document
# travels as text and becomes jsonb in the statement.
_ROW_TYPES = (
    "uuid", "bigint", "text", "text", "boolean", "text", "numeric", "text", "text", "text", "text", "text",
    "text", "timestamptz", "timestamptz", "timestamptz", "integer", "text",
)


def insert_many(tx: Tx, placements: Sequence[tuple[Order, str | None, str | None]]) -> None:
    """``insert`` for a batch of new orders in ONE statement (``INSERT ... SELECT FROM unnest(...)``), each
    ``(order, idempotency key, request hash)``: one round trip whatever the batch's size."""
    if not placements:
        return
    names = [col.strip() for col in _COLUMNS.split(",")]
    rows = [_row(order) for order, _, _ in placements]
    columns: list[list[Any]] = [[r[i] for r in rows] for i in range(len(names))]
    columns.append([key for _, key, _ in placements])
    columns.append([request_hash for _, _, request_hash in placements])
    # Binary (%b): a text array is sent without escaping, where the text format escapes every quote of
    # every document with a regular expression (most of the batch's CPU in psycopg).
    arrays = ", ".join(f"%b::{t}[]" for t in (*_ROW_TYPES, "text", "text"))
    selected = ", ".join("v.doc::jsonb" if n == "doc" else f"v.{n}" for n in names)
    tx.execute(
        f"INSERT INTO orders ({_COLUMNS}, idempotency_key, request_hash) "
        f"SELECT {selected}, v.idempotency_key, v.request_hash "
        f"FROM unnest({arrays}) AS v({', '.join(names)}, idempotency_key, request_hash)",
        columns,
    )


def update(tx: Tx, order: Order, previous_version: int) -> psycopg.Cursor[Any]:
    """Save a changed order; the caller holds the row lock, the version check is the last line of defence.

    Returns the cursor: in pipeline mode its ``rowcount`` (1 if the version matched) is known after sync.
    """
    values = _row(order)
    sets = ", ".join(f"{col.strip()} = %s" for col in _COLUMNS.split(",")[2:])
    return tx.execute(
        f"UPDATE orders SET {sets} WHERE id = %s AND version = %s", (*values[2:], order.id, previous_version)
    )


def update_with_history(tx: Tx, order: Order, previous_version: int, entries: Sequence[HistoryRecord]) -> int:
    """``update`` and ``add_history`` in ONE statement (one round trip): the changed order and the history
    entries of the change. Returns how many rows matched the version (1; the caller holds the row lock)."""
    values = _row(order)
    sets = ", ".join(f"{col.strip()} = %s" for col in _COLUMNS.split(",")[2:])
    history = ""
    params: list[Any] = [*values[2:], order.id, previous_version]
    if entries:
        history = (
            ", history AS (INSERT INTO order_history (order_id, seq, at, actor, action, from_stage, to_stage, reason,"
            " data) VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(entries)) + ")"
        )
        params += [v for e in entries for v in _history_row(order.id, e)]
    row = tx.execute(
        f"WITH updated AS (UPDATE orders SET {sets} WHERE id = %s AND version = %s RETURNING 1){history} "
        "SELECT count(*) AS n FROM updated",
        params,
    ).fetchone()
    assert row is not None
    return int(row["n"])


# The columns an update writes: all but id and number.
_UPDATE_TYPES = _ROW_TYPES[2:]


def update_many(tx: Tx, saves: Sequence[tuple[Order, int]]) -> int:
    """``update`` for many orders in ONE statement (``UPDATE ... FROM unnest(...)``); ``saves`` pairs each changed
    order with the version it was loaded at. Returns how many rows matched their version: the caller holds the
    row locks, so anything less than ``len(saves)`` means something bypassed them."""
    if not saves:
        return 0
    names = [col.strip() for col in _COLUMNS.split(",")[2:]]
    rows = [_row(order) for order, _ in saves]
    columns = [[r[i + 2] for r in rows] for i in range(len(names))]
    arrays = ", ".join(f"%s::{t}[]" for t in _UPDATE_TYPES)
    sets = ", ".join(f"{n} = v.{n}::jsonb" if n == "doc" else f"{n} = v.{n}" for n in names)
    cur = tx.execute(
        f"UPDATE orders o SET {sets} "
        f"FROM unnest(%s::uuid[], %s::integer[], {arrays}) AS v(id, previous_version, {', '.join(names)}) "
        "WHERE o.id = v.id AND o.version = v.previous_version",
        [[order.id for order, _ in saves], [version for _, version in saves], *columns],
    )
    return cur.rowcount


def add_history(tx: Tx, order_id: UUID, entries: Sequence[HistoryRecord]) -> None:
    add_histories(tx, [(order_id, e) for e in entries])


def add_histories(tx: Tx, entries: Sequence[tuple[UUID, HistoryRecord]]) -> None:
    """History entries of one or many orders, ``(order id, entry)`` pairs."""
    if not entries:
        return
    rows = [_history_row(order_id, e) for order_id, e in entries]
    # One multi-row INSERT (not executemany): a single statement that pipelines with the rest.
    tx.execute(
        "INSERT INTO order_history (order_id, seq, at, actor, action, from_stage, to_stage, reason, data) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows)),
        [v for row in rows for v in row],
    )


def _dumps_any(obj: Any) -> str:
    return json.dumps(obj, default=str)


def _history_row(order_id: UUID, e: HistoryRecord) -> tuple[Any, ...]:
    return (
        order_id,
        e.seq,
        e.at,
        Jsonb(e.actor.model_dump(mode="json")),
        e.action,
        e.from_stage.value if e.from_stage else None,
        e.to_stage.value if e.to_stage else None,
        e.reason,
        Jsonb(e.data, dumps=_dumps_any),  # encoded once (dates, decimals, ids as text)
    )


def history(tx: Tx, order_id: UUID) -> list[HistoryRecord]:
    rows = tx.execute(
        "SELECT seq, at, actor, action, from_stage, to_stage, reason, data FROM order_history "
        "WHERE order_id = %s ORDER BY seq",
        (order_id,),
    ).fetchall()
    return [document.history_from_row(r) for r in rows]


def _where_ref(ref: str) -> tuple[str, Any]:
    ref = str(ref).strip()
    try:
        return "id = %s", UUID(ref)
    except ValueError:
        pass
    number = order_number_from_search(ref)
    if number is None:
        raise NotFound(f"No order {ref!r}: give the order id or its number (1001 or #1001).", ref=ref)
    return "number = %s", number


def load(tx: Tx, ref: str | UUID, *, for_update: bool = False) -> Order:
    clause, value = _where_ref(str(ref))
    row = tx.execute(
        f"SELECT doc::text AS doc FROM orders WHERE {clause}{' FOR UPDATE' if for_update else ''}", (value,)
    ).fetchone()
    if row is None:
        raise NotFound(f"Order {ref} does not exist.", ref=str(ref))
    return document.from_json(row["doc"])


def load_with_history(tx: Tx, ref: str | UUID, *, for_update: bool = False) -> tuple[Order, list[HistoryRecord]]:
    """``load`` and ``history`` in ONE statement: what an order's detail shows.

    With ``for_update`` the row is locked by ``load`` first (two statements): a statement that waited for a
    row lock reads other tables with the snapshot it started with, so its history would miss the entries of
    the change it waited for.
    """
    clause, value = _where_ref(str(ref))
    if for_update:
        locked = tx.execute(f"SELECT id FROM orders WHERE {clause} FOR UPDATE", (value,)).fetchone()
        if locked is None:
            raise NotFound(f"Order {ref} does not exist.", ref=str(ref))
        clause, value = "id = %s", locked["id"]
    row = tx.execute(
        "SELECT o.doc::text AS doc, (SELECT coalesce(json_agg(json_build_object("
        "  'seq', h.seq, 'at', h.at, 'actor', h.actor, 'action', h.action, 'from_stage', h.from_stage,"
        "  'to_stage', h.to_stage, 'reason', h.reason, 'data', h.data) ORDER BY h.seq), '[]')"
        f" FROM order_history h WHERE h.order_id = o.id) AS history FROM orders o WHERE o.{clause}",
        (value,),
    ).fetchone()
    if row is None:
        raise NotFound(f"Order {ref} does not exist.", ref=str(ref))
    entries = [document.history_from_row({**h, "at": datetime.fromisoformat(h["at"])}) for h in row["history"]]
    return document.from_json(row["doc"]), entries


def stale_placed_orders(
    tx: Tx, placed_before: datetime, limit: int, after: tuple[datetime, UUID] | None = None
) -> list[Order]:
    """Placed orders old enough to abandon, oldest placement first, locked ``FOR UPDATE SKIP LOCKED``.

    SKIP LOCKED lets several timers share the work (each gets different orders) and never waits for a staff
    member's open change: that order is looked at again by the next check. Same condition as
    ``domain.is_abandonable`` (in ``placed`` since ``placed_before`` or earlier, address missing or payment not
    known: not paid, not authorized, no manual method), which still decides for each order loaded. ``after``
    (the last order's ``(placed_at, id)``) continues one check past orders it already looked at.

    ``stage_entered_at(doc)`` is the document's ``stage_changed_at`` as the partial index ``orders_placed_since``
    (migration 0002) keeps it for placed orders: the check reads the stale placed orders and no other.
    """
    rows = tx.execute(
        "SELECT doc::text AS doc FROM orders WHERE stage = 'placed' "
        + ("AND (placed_at, id) > (%(after_at)s, %(after_id)s) " if after else "")
        + "AND stage_entered_at(doc) <= %(cutoff)s "
        "AND (doc->'shipping_address' IS NULL OR doc->'shipping_address' = 'null'::jsonb "
        "     OR (paid_at IS NULL AND NOT coalesce((doc->>'payment_authorized')::boolean, false) "
        "         AND (payment_method IS NULL OR NOT payment_method = ANY(%(manual)s)))) "
        "ORDER BY placed_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
        {
            "cutoff": placed_before,
            "manual": sorted(m.value for m in MANUAL_PAYMENT_METHODS),
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        },
    ).fetchall()
    return [document.from_json(r["doc"]) for r in rows]


# ---------------------------------------------------------------------------------------------- queries


def _encode_cursor(sort: str, key: str, number: int) -> str:
    # The sort key travels as Postgres' own text form, so "infinity" (unpaid orders) round-trips too.
    raw = json.dumps([sort, key, number])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, key, number = json.loads(raw)
        if cursor_sort != sort or not isinstance(key, str):
            raise ValueError("cursor of another sort order")
        return key, int(number)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(
            "The cursor is not one this API returned.",
            errors=[field_error("cursor", f"malformed cursor ({exc.__class__.__name__})", "malformed_cursor", "query")],
        ) from None


def list_orders(tx: Tx, query: OrderQuery) -> tuple[list[Order], str | None]:
    """One page of orders, keyset-paginated so page 1,000 costs what page 1 does.

    Every sort has an index per stage and per channel (migration 0003). The stages asked for (or, without a
    stage, the channels) are read as one walk of that index per value, ``LATERAL`` over the list, each walk
    stopping after a page, and the pages merged. Postgres 15 cannot walk ``stage = ANY(...)`` in sort order;
    and even for one stage, given the value as a constant, it trusts the stage's share of all orders: for
    ``archived`` (half the orders, all of them old) it walks the whole-table index newest first and filters,
    reading 40,000 newer orders before the first archived one. Inside the ``LATERAL`` the value is a
    parameter, so the per-stage index is used whatever the stage.

    Sorted by payment date within a placement-date range, the range is read and sorted instead, or for
    "placed before" a date bounded by the orders placed just before it (migration 0004; see below).
    """
    if query.q and (token := _whole_token(tx, query.q)) is not None:
        return _list_by_token(tx, query, token)
    where: list[str] = []
    params: list[Any] = []
    per_value: tuple[str, list[str]] | None = None  # (column, values): one index walk per value
    stages = [s.value for s in query.stage or ()]
    channels = [c.value for c in query.channel or ()]
    if stages:
        per_value = ("stage", stages)
    if channels and per_value is None:
        per_value = ("channel", channels)
    elif len(channels) == 1:
        where.append("channel = %s")
        params.append(channels[0])
    elif channels:
        where.append("channel = ANY(%s)")
        params.append(channels)
    fulfillment = [f.value for f in query.fulfillment_status or ()]
    if fulfillment and per_value is None:
        per_value = ("fulfillment_status", fulfillment)
    elif fulfillment:
        where.append("fulfillment_status = ANY(%s)")
        params.append(fulfillment)
    payments = list(query.payment_status or ())
    if payments:
        # Orders payments has not reported on yet have no status: they are unpaid (migration 0006 indexes it).
        where.append("coalesce(payment_status, 'unpaid') = ANY(%s)")
        params.append(payments)
    per_value_at = len(params)  # where the value list goes when it is a plain condition
    if per_value:
        where.append(f"{per_value[0]} = one.value")
    if query.placed_from:
        where.append("placed_at >= %s")
        params.append(query.placed_from)
    if query.placed_to:
        where.append("placed_at < %s")
        params.append(query.placed_to)
    if query.test is not None:
        where.append("test = %s")
        params.append(query.test)
    desc = query.direction == "desc"
    source = "orders"
    if query.q:
        # A search reads the narrow copy (migration 0007: the filtered and sorted columns and the search key,
        # ~180 bytes a row where an order's is ~1.5 kB); only the page's rows are read from ``orders``. A rare
        # term is looked up in its trigram index, a common one found by walking a sort index (the copy has the
        # list's three) and checking the copy's rows. Two plans no single statement offers are chosen here by
        # how many orders Postgres expects the term to match (``_common_search``): a common term with a stage,
        # channel or fulfillment filter walks that value's index of ``orders`` (the copy has none) and checks
        # the term on the rows; a common term within a placement-date range sorted by payment date reads the
        # range off the copy and checks it with ``strpos`` (the trigram index cannot serve it: asking it for
        # ``hoodie``'s 127k orders cost more than checking a month's 41k rows).
        ranged = query.sort == "paid_at" and (query.placed_from is not None or (desc and query.placed_to is not None))
        common = (per_value is not None or ranged) and _common_search(tx, query.q)
        if common and not ranged:
            where.append(_search_condition(query.q, params, "search_key(search_text)", indexed=False))
        else:
            source = "order_search"
            where.append(_search_condition(query.q, params, "key", indexed=not common))
            if per_value:  # the copy has no per-value index: one condition on the rows read
                where[where.index(f"{per_value[0]} = one.value")] = f"{per_value[0]} = ANY(%s)"
                params.insert(per_value_at, per_value[1])
                per_value = None
    searching = source == "order_search"


    key_type = "timestamptz"
    if query.sort == "paid_at":
        key = f"coalesce(paid_at, '{'-infinity' if desc else 'infinity'}'::timestamptz)"
    elif query.sort == "fulfillment_status":
        key, key_type = "fulfillment_status", "text"
    else:
        key = "placed_at"
    # The cursor names the sort AND the direction: a position in one ordering means nothing in another.
    ordering = f"{query.sort} {query.direction}"
    # Sorted by payment date within a placement-date range: the range read and sorted, or, for "placed
    # before" newest payment first without a stage or channel, the range near its end bounding the rest.
    by_paid_in_range = query.sort == "paid_at" and (
        query.placed_from is not None or (desc and query.placed_to is not None and not per_value)
    )
    if per_value and by_paid_in_range:
        # The plans for a date range filter the list of values in one read (see below).
        where[where.index(f"{per_value[0]} = one.value")] = f"{per_value[0]} = ANY(%s)"
        params.insert(per_value_at, per_value[1])
    if query.cursor:
        after_key, after_number = _decode_cursor(query.cursor, ordering)
        if per_value and not by_paid_in_range and after_key in ("infinity", "-infinity"):
            # Past the last paid order, Postgres expects no order at all after the cursor, for any index, and
            # took the whole-table one: page 2 of stage=placed + q=nakamura by payment date filtered 78k
            # unpaid orders of other stages (140 ms at 1M). With the walked index's leading column in the
            # comparison only the per-value index can serve it. Not for a finite position: there the same
            # comparison turned channel=whatsapp + q=priya's page 2 into a bitmap read of every match
            # (12 -> 150-400 ms).
            where.append(f"({per_value[0]}, {key}, number) {'<' if desc else '>'} "
                         f"(one.value, %s::{key_type}, %s::bigint)")
        else:
            where.append(f"({key}, number) {'<' if desc else '>'} (%s::{key_type}, %s::bigint)")
        params.extend([after_key, after_number])
    way = "DESC" if desc else "ASC"
    n = query.limit + 1
    if by_paid_in_range and query.placed_from is not None:
        # A placement-date range sorted by payment date: no index orders one within a range of the other,
        # and walking the payment-date index while filtering on the placement date reads every order paid
        # before (asc) or after (desc) the range's first match - most of the table for a month a year ago
        # (0.4-0.8 s at 1M). So the range's keys are read off orders_placed_cover (index-only: it carries the
        # payment date and the filterable columns), sorted, and only the page's rows are read; MATERIALIZED
        # keeps Postgres from turning it back into the walk. The cost grows with the range: ~10 ms for a
        # month at 1M orders (41k entries), ~150 ms for a year. "Placed before" a date: see below.
        sql = (
            f"WITH r AS MATERIALIZED (SELECT number, {key} AS sort_key FROM {source} WHERE {' AND '.join(where)}), "
            f"p AS (SELECT number, sort_key FROM r ORDER BY sort_key {way}, number {way} LIMIT %s) "
            "SELECT o.doc::text AS doc, p.sort_key::text AS sort_key, p.number FROM p JOIN orders o USING (number) "
            f"ORDER BY p.sort_key {way}, p.number {way}"
        )
        params.append(n)
    elif by_paid_in_range and (bound := _placed_before_bound(tx, query, source, key, where, params)) is not None:
        # Placed before a date, latest payment first: the walk down the payment-date index skips everything
        # placed after the date and paid since (half the table for "before a year ago", 0.5-1 s).
        # ``_placed_before_bound`` read the page among the orders placed in the _NEAR before the date; its
        # last payment date t bounds the rest: an older order comes before t only if it waited longer than
        # t - (date - _NEAR) for its payment, and those few are found through orders_paid_delay. Two round
        # trips: with t as a constant (not a value computed inside the statement) Postgres sees how few
        # orders waited that long and reads that index; it cannot for a value it does not know.
        near_numbers, t, start = bound
        # The copy has no orders_paid_delay: the orders that waited that long are found in ``orders``.
        late = ("number IN (SELECT number FROM orders WHERE paid_at IS NOT NULL AND paid_at - placed_at >= %s)"
                if searching else "paid_at IS NOT NULL AND paid_at - placed_at >= %s")
        sql = (
            f"WITH p AS (SELECT number, {key} AS sort_key FROM {source} WHERE number = ANY(%s) "
            f"UNION ALL SELECT number, {key} AS sort_key FROM {source} WHERE {late} "
            "AND paid_at >= %s AND placed_at < %s AND " + " AND ".join(where)
            + " ORDER BY sort_key DESC, number DESC LIMIT %s) "
            "SELECT o.doc::text AS doc, p.sort_key::text AS sort_key, p.number FROM p JOIN orders o USING (number) "
            "ORDER BY p.sort_key DESC, p.number DESC"
        )
        params = [near_numbers, t - start, t, start, *params, n]
    elif searching:
        sql = (
            f"WITH p AS (SELECT number, {key} AS sort_key FROM order_search WHERE {' AND '.join(where)} "
            f"ORDER BY {key} {way}, number {way} LIMIT %s) "
            "SELECT o.doc::text AS doc, p.sort_key::text AS sort_key, p.number FROM p JOIN orders o USING (number) "
            f"ORDER BY p.sort_key {way}, p.number {way}"
        )
        params.append(n)
    else:
        page = (
            f"SELECT doc, {key} AS sort_key, number FROM orders"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY {key} {way}, number {way} LIMIT %s"
        )
        params.append(n)
        if per_value:
            sql = (
                "SELECT p.doc::text AS doc, p.sort_key::text AS sort_key, p.number "
                f"FROM unnest(%s::text[]) AS one(value) CROSS JOIN LATERAL ({page}) p "
                f"ORDER BY p.sort_key {way}, p.number {way} LIMIT %s"
            )
            params = [per_value[1], *params, n]
        else:
            sql = f"SELECT p.doc::text AS doc, p.sort_key::text AS sort_key, p.number FROM ({page}) p"
    return _page(query, ordering, _fetch(tx, query, sql, params))


def _page(query: OrderQuery, ordering: str, rows: list[Any]) -> tuple[list[Order], str | None]:
    """The page's orders and the cursor after them (``rows`` holds one more than a page when there is more)."""
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    orders = [document.from_json(r["doc"]) for r in rows]
    next_cursor = _encode_cursor(ordering, rows[-1]["sort_key"], rows[-1]["number"]) if more and rows else None
    return orders, next_cursor


def _fetch(tx: Tx, query: OrderQuery, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[Any]:
    try:
        # Planned at every execution (prepare=False): the right plan depends on the values (how common a
        # search term is, how wide a date range), and the generic plan psycopg's prepared statement settles
        # on after five executions guesses them (a common word's search went from 1 ms to 1.8 s at 1M).
        return tx.execute(sql, params, prepare=False).fetchall()
    except psycopg.errors.DataError:
        if not query.cursor:
            raise
        # Only the cursor's values are free text here: a tampered one is the client's error, not a 500.
        raise InvalidRequest(
            "The cursor is not one this API returned.",
            errors=[field_error("cursor", "malformed cursor (bad position)", "malformed_cursor", "query")],
        ) from None


def _placed_before_bound(
    tx: Tx, query: OrderQuery, source: str, key: str, where: list[str], params: list[Any]
) -> tuple[list[int], datetime, datetime] | None:
    """For "placed before" a date, newest payment first: the page among the orders placed in the ``_NEAR``
    before the date (read off orders_placed_cover, or the search copy, and sorted), as (numbers, the page's last
    payment date, the near range's start); None when they do not hold a whole page of paid orders (then the
    walk it is)."""
    assert query.placed_to is not None
    start = query.placed_to - _NEAR
    near = _fetch(
        tx,
        query,
        f"WITH r AS MATERIALIZED (SELECT number, paid_at, {key} AS sort_key FROM {source} "
        "WHERE placed_at >= %s AND " + " AND ".join(where) + ") "
        "SELECT number, paid_at FROM r ORDER BY sort_key DESC, number DESC LIMIT %s",
        [start, *params, query.limit + 1],
    )
    if len(near) <= query.limit or near[-1]["paid_at"] is None:
        return None
    return [r["number"] for r in near], near[-1]["paid_at"], start


def _whole_token(tx: Tx, q: str) -> str | None:
    """``q`` as a token of ``order_token`` (migration 0008) when that table's rows for it are exactly the orders
    the "contains" search finds; otherwise None (the trigram path answers).

    Why it is the same: the search is "the search text contains the term" (``_search_condition``: its
    ``search_key`` form is one-to-one). A term without a space that is contained in a text is contained in one
    of its words (the text split at spaces). A term holding one of ``- @ . _`` is contained only in words that
    hold it too, and every such word of every order is a token (``search_tokens``). So the orders containing
    the term are those with a token containing it; when the vocabulary (every token ever stored, a superset)
    holds no token containing the term but the term itself, those are exactly the orders with the term as a
    token. Not taken for a term that is also searched as phone digits or an order number (other alternatives),
    nor below 3 characters (no trigram to look the vocabulary up with). The check is its own statement: a token
    committed between it and the page is like an order placed just after the page was read.
    """
    needle = q.strip().lower()
    if (len(needle) < 3 or " " in needle or not _TOKEN_CHARS.search(needle) or _phone_digits(needle)
            or order_number_from_search(q) is not None):
        return None
    params: list[Any] = []
    contains = _search_condition(q, params, "search_key(token)")
    # MATERIALIZED: planned without the EXISTS' "first row will do", which would rather scan the whole
    # vocabulary than ask the trigram index; read lazily, so EXISTS still stops at the first longer token.
    row = tx.execute(
        f"WITH c AS MATERIALIZED (SELECT token FROM order_token_vocab WHERE {contains}) "
        "SELECT EXISTS (SELECT 1 FROM c WHERE token <> %s) AS longer",
        [*params, needle], prepare=False,
    ).fetchone()
    assert row is not None
    return None if row["longer"] else needle


def _list_by_token(tx: Tx, query: OrderQuery, token: str) -> tuple[list[Order], str | None]:
    """``list_orders`` for a whole-token term (``_whole_token``): the token's rows of ``order_token`` walked in
    the sort's index (token, sort key, number), the other filters checked on ``order_search`` for the rows read,
    and only the page's rows read from ``orders``. Same order, same cursors as the other paths."""
    desc = query.direction == "desc"
    way = "DESC" if desc else "ASC"
    params: dict[str, Any] = {"token": token, "n": query.limit + 1}
    where = ["t.token = %(token)s"]
    joined = query.sort == "fulfillment_status"
    for name, column, values in (("stage", "s.stage", [s.value for s in query.stage or ()]),
                                 ("channel", "s.channel", [c.value for c in query.channel or ()]),
                                 ("fulfillment", "s.fulfillment_status",
                                  [f.value for f in query.fulfillment_status or ()]),
                                 ("payment", "coalesce(s.payment_status, 'unpaid')", list(query.payment_status or ()))):
        if values:
            where.append(f"{column} = ANY(%({name})s)")
            params[name] = values
            joined = True
    if query.test is not None:
        where.append("s.test = %(test)s")
        params["test"] = query.test
        joined = True
    if query.placed_from:
        where.append("t.placed_at >= %(placed_from)s")
        params["placed_from"] = query.placed_from
    if query.placed_to:
        where.append("t.placed_at < %(placed_to)s")
        params["placed_to"] = query.placed_to
    key_type = "timestamptz"
    if query.sort == "paid_at":
        key = "coalesce(t.paid_at, 'infinity'::timestamptz)"  # order_token_paid's key (unpaid last, ascending)
    elif query.sort == "fulfillment_status":
        key, key_type = "s.fulfillment_status", "text"
    else:
        key = "t.placed_at"
    ordering = f"{query.sort} {query.direction}"
    after: tuple[str, int] | None = None
    if query.cursor:
        after = _decode_cursor(query.cursor, ordering)
        params["after_key"], params["after_number"] = after
    source = "order_token t" + (" JOIN order_search s ON s.number = t.number" if joined else "")

    def part(conditions: list[str], sort_key: str, order: str) -> str:
        return (f"SELECT t.number, {sort_key} AS sort_key FROM {source} WHERE {' AND '.join(where + conditions)} "
                f"ORDER BY {order} LIMIT %(n)s")

    after_row = f"(%(after_key)s::{key_type}, %(after_number)s::bigint)"
    if query.sort == "paid_at" and desc:
        # Newest payment first, unpaid last (their key is -infinity, by number): one index serves both paid
        # sorts, so this reads it as two walks, the paid rows backwards and the unpaid ones (key infinity in the
        # index) backwards by number, each stopping after a page, and merges them. A payment date is never
        # infinite (it comes from a Python datetime), so "key < infinity" is "paid".
        unpaid = [f"{key} = 'infinity'"]
        parts = []
        if after is None or after[0] != "-infinity":
            paid = [f"{key} < 'infinity'"] + ([f"({key}, t.number) < {after_row}"] if after else [])
            parts.append(part(paid, "t.paid_at", f"{key} DESC, t.number DESC"))
        else:
            unpaid.append("t.number < %(after_number)s::bigint")
        parts.append(part(unpaid, "'-infinity'::timestamptz", "t.number DESC"))
        page = ("SELECT * FROM (" + " UNION ALL ".join(f"({p})" for p in parts) + ") u "
                "ORDER BY sort_key DESC, number DESC LIMIT %(n)s")
    else:
        page = part([f"({key}, t.number) {'<' if desc else '>'} {after_row}"] if after else [], key,
                    f"{key} {way}, t.number {way}")
    sql = (
        f"WITH p AS ({page}) "
        "SELECT o.doc::text AS doc, p.sort_key::text AS sort_key, p.number FROM p JOIN orders o USING (number) "
        f"ORDER BY p.sort_key {way}, p.number {way}"
    )
    return _page(query, ordering, _fetch(tx, query, sql, params))


# The search index's form of the search text (migration 0004's ``search_key``): separators become upper-case
# letters, which the lower-cased search text never contains, so pg_trgm keeps an SKU or an e-mail address one
# word (it splits words at anything but letters and digits) and the mapping is one-to-one: a pattern matches
# the translated text exactly when the untranslated pattern matches the search text.
_SEARCH_KEY = str.maketrans(" .@-_", "JZXQW")
# How far before a "placed before" date the payment-date plan looks for its bound (see ``list_orders``).
_NEAR = timedelta(days=14)
_PHONE_LIKE = re.compile(r"[\d\s+()./-]+")
# A token of the search text holds one of these (migration 0008's ``search_tokens``): an SKU with a dash, an e-mail.
_TOKEN_CHARS = re.compile(r"[-@._]")
# A search term Postgres expects to match this many orders or more is "common" (``list_orders``): walking an
# index reads ~N/matches x 50 rows for a page, the trigram index every match; at 1M orders they cost the same
# near 10k matches (nakamura, 31k: 16 ms walking stage=placed's index, 150-350 ms through the trigram index).
_COMMON = 10_000


def count_orders(tx: Tx, query: OrderQuery, cap: int) -> tuple[int, bool]:
    """How many orders the list's filters match (its sort and cursor aside), counting at most ``cap``:
    ``(count, capped)``. For an export's progress: the count is read before the rows, so an order placed in
    between may make the export one row longer than announced."""
    where: list[str] = []
    params: list[Any] = []
    for column, values in (("stage", [s.value for s in query.stage or ()]),
                           ("channel", [c.value for c in query.channel or ()]),
                           ("fulfillment_status", [f.value for f in query.fulfillment_status or ()]),
                           ("coalesce(payment_status, 'unpaid')", list(query.payment_status or ()))):
        if values:
            where.append(f"{column} = ANY(%s)")
            params.append(values)
    if query.placed_from:
        where.append("placed_at >= %s")
        params.append(query.placed_from)
    if query.placed_to:
        where.append("placed_at < %s")
        params.append(query.placed_to)
    if query.test is not None:
        where.append("test = %s")
        params.append(query.test)
    if query.q and (token := _whole_token(tx, query.q)) is not None:
        where.append("number IN (SELECT number FROM order_token WHERE token = %s)")
        params.append(token)
    elif query.q:
        where.append(_search_condition(query.q, params, "key"))
    sql = (f"SELECT count(*) AS n FROM (SELECT 1 FROM {'order_search' if query.q else 'orders'}"
           + (" WHERE " + " AND ".join(where) if where else "") + " LIMIT %s) c")
    row = tx.execute(sql, [*params, cap + 1], prepare=False).fetchone()
    n = int(row["n"]) if row else 0
    return min(n, cap), n > cap


def _common_search(tx: Tx, q: str) -> bool:
    """Whether Postgres expects ``q`` to match at least ``_COMMON`` orders: its own estimate (the statistics of
    the copy's ``key``), for one more planning (~0.3 ms)."""
    params: list[Any] = []
    row = tx.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM order_search WHERE {_search_condition(q, params, 'key')}",
                     params, prepare=False).fetchone()
    assert row is not None
    plan = next(iter(row.values()))
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return float(plan[0]["Plan"]["Plan Rows"]) >= _COMMON


def _search_condition(q: str, params: list[Any], column: str, *, indexed: bool = True) -> str:
    """``q`` as a substring of ``column``, the search key (or a phone number's digits, or an order number).

    ``key`` is ``search_key(search_text)`` (migrations 0004, 0007), so the test is ``LIKE`` the translated
    pattern: exact, and served by the copy's trigram index. ``indexed=False`` says the same with ``strpos``,
    which no index serves: the rows are found another way and checked. For an e-mail address the index is
    asked only for the part up to the ``@`` and the whole address is checked with ``strpos`` on the rows it
    finds: every address at a domain shares its trigrams (``exa``, ``com``, ...), whose long lists of rows
    cost more to read (24 ms at 1M orders) than they narrow.
    """
    number = order_number_from_search(q)
    needle = q.strip().lower()
    digits = re.sub(r"\D", "", needle)
    at = needle.find("@")
    key = needle.translate(_SEARCH_KEY)
    if not indexed:
        alternatives = [f"strpos({column}, %s) > 0"]
        params.append(key)
    elif at >= 3:
        alternatives = [f"({column} LIKE %s AND strpos({column}, %s) > 0)"]
        params.extend([f"%{_escape_like(needle[: at + 1].translate(_SEARCH_KEY))}%", key])
    else:
        alternatives = [f"{column} LIKE %s"]
        params.append(f"%{_escape_like(key)}%")
    if _phone_digits(needle):
        alternatives.append(f"{column} LIKE %s" if indexed else f"strpos({column}, %s) > 0")
        params.append(f"%{digits}%" if indexed else digits)
    if number is not None:
        alternatives.append("number = %s")
        params.append(number)
    return "(" + " OR ".join(alternatives) + ")"


def _phone_digits(needle: str) -> bool:
    """Whether the (lower-cased) term is also looked up by its digits: a phone number as typed (spaces, dashes,
    a leading +) is; the digits inside an e-mail address or an SKU are not a phone number (they made an address
    match every phone with "536")."""
    digits = re.sub(r"\D", "", needle)
    return len(digits) >= 3 and digits != needle and _PHONE_LIKE.fullmatch(needle) is not None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def set_payment_projection(tx: Tx, order: Order, payment_status: str | None, paid_at: datetime | None) -> None:
    """Payments own the payment status; orders keep a copy for the list (sort by payment completion)."""
    tx.execute(
        "UPDATE orders SET payment_status = %s, paid_at = %s, doc = %s WHERE id = %s",
        (payment_status, paid_at, document.to_json(order), order.id),
    )


def set_fulfillment_projection(tx: Tx, order: Order) -> None:
    """Fulfillment owns the fulfillment status and the shipments; orders keep a copy in the document (the
    ``fulfillment_status`` column is generated from it, for the list). Not a change of the order: no version."""
    tx.execute("UPDATE orders SET doc = %s WHERE id = %s", (document.to_json(order), order.id))
