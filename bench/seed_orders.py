"""Seed data: a busy shop's two years of orders, set-based.  ``python bench/seed_orders.py --orders 1000000``

Without ``--into`` it creates a scratch database (``oms_bench_list``: dropped first, migrated exactly as
``oms migrate`` migrates the ``orders`` schema, kept afterwards so ``bench/list_orders.py --reuse`` can time
queries on it; ``--drop`` drops it again). With ``--into URL`` it adds the orders to an existing, migrated
database (numbers from its sequence, indexes kept in place, so slower).

One ``INSERT ... SELECT`` over ``generate_series`` builds every row inside Postgres: the document in the
layout ``services.orders.document`` writes, and the columns ``store`` derives from it (``search_text`` as
``store._search_text`` builds it). Python would need minutes to build a million ``Order`` objects; this takes
about a minute at 1M on two cores. In a scratch database the secondary indexes are dropped for the load and
rebuilt from their own definitions afterwards (building an index once is much cheaper than a million inserts
into it), and the search table (migration 0007) is filled in one statement after the load instead of by its
trigger (likewise the token table and its vocabulary, migration 0008). Then a sample of rows is read back
through ``document.from_json`` and ``store._row`` to prove the stored rows are exactly what the store would
have written for those orders, and the search and token tables are compared with what their triggers derive
from every order.

What the data looks like (it decides which plans Postgres picks, so it is meant to be like a real shop):
numbers ascend with placement time over two years ending at ``--until``; orders older than a month are
almost all finished (delivered, archived, cancelled, abandoned, returned), the last days hold the in-flight
ones; channels, payment methods, test orders, phones, e-mails and 1-4 lines per order in the proportions
below; card orders are paid minutes after placement, cash on delivery days later at the door.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from services.orders import document, store  # noqa: E402
from shared.db import connect, with_database  # noqa: E402
from shared.migrate import SHARED_MIGRATIONS, migrate_schema  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/oms_bench_list"
SCHEMA = "orders"
DAYS = 730

FIRST = ["Priya", "Rahul", "Anna", "Lukas", "Sofia", "Mateo", "Aisha", "Omar", "Mei", "Kenji", "Fatima", "Ivan",
         "Lea", "Noah", "Zara", "Arjun", "Chloe", "Diego", "Elif", "Hana", "Jonas", "Kavya", "Liam", "Maya",
         "Nina", "Oskar", "Pablo", "Rosa", "Sami", "Tara", "Uma", "Viktor", "Wen", "Yusuf", "Zoe", "Emma"]
LAST = ["Raman", "Mehta", "Schmidt", "Müller", "Garcia", "Rossi", "Khan", "Tanaka", "Chen", "Nowak", "Silva",
        "Dubois", "Jensen", "Kowalski", "Novak", "Okafor", "Patel", "Quinn", "Reyes", "Sato", "Torres", "Weber",
        "Yilmaz", "Ivanova", "Fischer", "Haddad", "Larsen", "Moreau", "Nakamura", "Ortiz", "Fernandes", "Ramanathan"]
PRODUCTS = ["TSHIRT", "HOODIE", "MUG", "CAP", "TOTE", "SOCKS", "POSTER", "NOTEBOOK", "CANDLE", "SCARF", "JEANS",
            "SNEAKER", "BOTTLE", "PHONECASE", "STICKER"]
COLOURS = ["RED", "BLUE", "BLACK", "WHITE", "GREEN", "GREY", "PINK", "NAVY"]
SIZES = ["XS", "S", "M", "L", "XL"]
CITIES = [("Bengaluru", "IN"), ("Berlin", "DE"), ("Madrid", "ES"), ("Lyon", "FR"), ("Osaka", "JP"), ("Austin", "US")]
PHONE_PREFIXES = ["+91 98450 ", "+91 99001 ", "+91 97310 ", "+49 30 ", "+34 6", "+1 512 "]

# Stages by age: the last three days hold the orders in flight, the last month the ones on their way, and
# older orders are finished but for a few stuck ones (on hold, lost in shipping, waiting for a note).
STAGES_RECENT = [("placed", 20), ("confirmed", 20), ("approved", 12), ("processed", 12), ("shipped", 12),
                 ("on_hold", 3), ("cancelled", 6), ("abandoned", 12), ("rejected", 3)]
STAGES_MONTH = [("shipped", 20), ("delivered", 50), ("returned", 3), ("cancelled", 8), ("abandoned", 10),
                ("rejected", 2), ("on_hold", 2), ("processed", 3), ("placed", 1), ("confirmed", 1)]
STAGES_OLD = [("archived", 550), ("delivered", 220), ("returned", 40), ("cancelled", 70), ("abandoned", 90),
              ("rejected", 20), ("on_hold", 3), ("shipped", 3), ("placed", 1), ("confirmed", 1)]
CHANNELS = [("web", 45), ("whatsapp", 25), ("marketplace", 15), ("pos", 8), ("manual", 4), ("chat", 2), ("test", 1)]
METHODS = [("card", 55), ("cash_on_delivery", 30), ("bank_transfer", 10), ("pos_on_delivery", 5)]
LINES = [(1, 3), (2, 2), (3, 1), (4, 1)]
QUANTITIES = [(1, 3), (2, 1), (3, 1)]


def _text_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pick(weighted: list[tuple[Any, int]], r: str) -> str:
    """SQL choosing one of ``weighted`` by its weight, for a uniform ``r`` in [0, 1)."""
    total = sum(w for _, w in weighted)
    bounds, acc = [], 0
    for _, w in weighted:
        bounds.append(acc / total)
        acc += w
    values = [str(v) for v, _ in weighted]
    return f"({_text_array(values)})[width_bucket({r}, ARRAY{bounds}::float8[])]"


def _any(values: list[str], r: str) -> str:
    return f"({_text_array(values)})[1 + floor({r} * {len(values)})::int]"


def insert_sql() -> str:
    """The one statement that adds ``%(n)s`` orders placed over the ``DAYS`` days before ``%(until)s``."""
    stage = (f"CASE WHEN age < interval '3 days' THEN {_pick(STAGES_RECENT, 'r_stage')} "
             f"WHEN age < interval '30 days' THEN {_pick(STAGES_MONTH, 'r_stage')} "
             f"ELSE {_pick(STAGES_OLD, 'r_stage')} END")
    return f"""
WITH b AS (
    SELECT g, nextval('order_number_seq') AS number,
           md5(%(seed)s || ':' || g)::uuid AS id,
           placed_at, %(until)s::timestamptz - placed_at AS age,
           random() AS r_stage, {_pick(CHANNELS, 'random()')} AS channel, {_pick(METHODS, 'random()')} AS method,
           {_any(FIRST, 'random()')} AS first, {_any(LAST, 'random()')} AS last,
           random() AS r_phone, random() AS r_email, random() AS r_test, random() AS r_addr, random() AS r_paid,
           random() AS r_changed, random() AS r_x, {_pick(LINES, 'random()')}::int AS lines
    FROM (SELECT g, date_trunc('second', %(until)s::timestamptz - interval '{DAYS} days'
                   + make_interval(secs => (g - 1 + random()) * {DAYS} * 86400.0 / %(n)s)) AS placed_at
          FROM generate_series(1, %(n)s) g) t
), s AS (
    SELECT b.*, {stage} AS stage FROM b
), o AS (
    SELECT s.*,
           CASE WHEN r_phone < 0.8 THEN {_any(PHONE_PREFIXES, 'r_x')}
                || (10000000 + floor(r_phone * 1e9)::bigint %% 89999999)::text END AS phone,
           CASE WHEN r_email < 0.85 THEN lower(first || '.' || last)
                || (1 + floor(r_email * 1e6)::int %% 998) || '@example.com' END AS email,
           channel = 'test' OR r_test < 0.01 AS test,
           CASE WHEN stage = 'abandoned' OR (stage = 'placed' AND r_x < 0.4) THEN NULL ELSE method END
             AS payment_method,
           stage NOT IN ('placed', 'abandoned') OR r_addr < 0.4 AS has_address,
           CASE WHEN method = 'card' AND stage NOT IN ('placed', 'abandoned', 'rejected')
                  THEN placed_at + make_interval(mins => 1 + floor(r_paid * 120)::int)
                WHEN stage IN ('delivered', 'returned', 'archived')
                  THEN placed_at + make_interval(days => 2 + floor(r_paid * 7)::int) END AS paid_at,
           CASE WHEN stage = 'placed' THEN placed_at
                ELSE least(%(until)s::timestamptz, placed_at + make_interval(secs => floor(r_changed * 864000)::int))
           END AS stage_changed_at
    FROM s
), full_order AS (
    SELECT o.*, i.items, i.skus, i.subtotal, (ARRAY[0, 490, 990])[1 + floor(r_x * 3)::int] AS shipping,
           CASE WHEN has_address THEN jsonb_build_object(
               'line1', (1 + floor(r_addr * 299)::int) || ' Main Street', 'line2', NULL,
               'city', {_any([c for c, _ in CITIES], 'r_addr')}, 'region', NULL, 'postal_code', NULL,
               'country', {_any([c for _, c in CITIES], 'r_addr')}) END AS address
    FROM o CROSS JOIN LATERAL (
        SELECT jsonb_agg(jsonb_build_object('sku', sku, 'name', initcap(sku), 'quantity', qty,
                                            'unit_price', (cents / 100.0)::numeric(12, 2)::text,
                                            'line_total', (qty * cents / 100.0)::numeric(14, 2)::text) ORDER BY i)
                 AS items,
               string_agg(lower(sku), ' ' ORDER BY i) AS skus, sum(qty * cents) AS subtotal
        FROM (SELECT i,
                     {_any(PRODUCTS, 'random()')} || '-' || {_any(COLOURS, 'random()')} || '-'
                       || {_any(SIZES, 'random()')} AS sku,
                     {_pick(QUANTITIES, 'random()')}::int AS qty, 299 + floor(random() * 9700)::int AS cents
              FROM generate_series(1, o.lines) i) line
    ) i
)
INSERT INTO orders ({store._COLUMNS}, idempotency_key, request_hash)
SELECT id, number, channel, stage, test, 'EUR', (subtotal + shipping) / 100.0,
       first || ' ' || last, phone, email,
       concat_ws(' ', lower(first || ' ' || last), nullif(regexp_replace(coalesce(phone, ''), '\\D', '', 'g'), ''),
                 email, skus),
       payment_method, CASE WHEN payment_method = 'card' AND paid_at IS NOT NULL THEN 'succeeded' END,
       paid_at, placed_at, stage_changed_at, v.version,
       jsonb_build_object(
           'id', id::text, 'number', number, 'channel', channel, 'stage', stage,
           'held_from', CASE WHEN stage = 'on_hold' THEN 'confirmed' END,
           'customer', jsonb_build_object('name', first || ' ' || last, 'phone', phone, 'email', email),
           'items', items, 'currency', 'EUR',
           'totals', jsonb_build_object('subtotal', (subtotal / 100.0)::numeric(14, 2)::text,
                                        'shipping', (shipping / 100.0)::numeric(14, 2)::text,
                                        'discount', '0.00', 'tax', '0.00',
                                        'total', ((subtotal + shipping) / 100.0)::numeric(14, 2)::text),
           'shipping_address', address, 'payment_method', payment_method,
           'paid_at', to_jsonb(paid_at),
           'payment_status', CASE WHEN payment_method = 'card' AND paid_at IS NOT NULL THEN 'succeeded' END,
           'payment_authorized', false, 'customer_note', NULL,
           'customer_note_skipped', stage NOT IN ('placed', 'abandoned'), 'notes', '[]'::jsonb,
           'test', test, 'external_ref', NULL,
           'placed_at', to_jsonb(placed_at), 'stage_changed_at', to_jsonb(stage_changed_at),
           'created_at', to_jsonb(placed_at), 'updated_at', to_jsonb(stage_changed_at),
           'version', v.version, 'history_seq', v.version,
           'fulfillment_status', 'unfulfilled', 'shipments', '[]'::jsonb),
       NULL, NULL
FROM full_order CROSS JOIN LATERAL (SELECT 1 + floor(r_changed * 8)::int AS version) v
"""


# What the triggers of migration 0007 copy into the search table, for every order at once: the scratch load
# switches its insert trigger off (a transition table of a million documents), fills the copy in one statement
# and builds its indexes afterwards, as for the orders' own.
SEARCH_COPY_COLUMNS = "number, placed_at, paid_at, stage, channel, test, fulfillment_status, payment_status"
SEARCH_COPY_SQL = (f"INSERT INTO order_search SELECT {SEARCH_COPY_COLUMNS}, search_key(search_text) FROM orders")
# Likewise migration 0008's whole-token table and its vocabulary (every token stored).
TOKEN_COPY_SQL = ("INSERT INTO order_token SELECT w, number, placed_at, paid_at "
                  "FROM orders, search_tokens(search_text) w")
VOCAB_COPY_SQL = "INSERT INTO order_token_vocab SELECT DISTINCT token FROM order_token"
TABLES = ("orders", "order_search", "order_token", "order_token_vocab")
INSERT_TRIGGERS = ("order_search_inserted", "order_token_inserted")


def create(url: str) -> None:
    """A fresh database at ``url`` (dropped first) with the ``orders`` schema migrated as ``oms migrate`` does."""
    drop(url)
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"')
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    migrate(url)


def migrate(url: str) -> list[str]:
    applied = migrate_schema(url, SCHEMA, [SHARED_MIGRATIONS, ROOT / "services" / "orders" / "migrations"])
    print(f"migrated {SCHEMA}: {', '.join(applied) or 'nothing new'}", flush=True)
    return applied


def drop(url: str) -> None:
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def seed(url: str, n: int, *, seed: int = 7, until: datetime | None = None, rebuild_indexes: bool = True) -> None:
    """Add ``n`` orders; with ``rebuild_indexes`` (an empty scratch database) build the secondary indexes after."""
    until = until or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    t0 = time.perf_counter()
    with connect(url, SCHEMA) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET timezone = 'UTC'")  # to_jsonb(timestamptz) writes the offset: +00:00 as Python does
        conn.execute("SELECT setseed(%s)", (((seed % 1000) / 1000.0),))
        indexes = []
        if rebuild_indexes:
            indexes = conn.execute(
                "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition "
                "FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
                "WHERE i.indrelid = ANY(%s::regclass[]) AND c.oid IS NULL", (list(TABLES),)
            ).fetchall()
            for ix in indexes:
                conn.execute(f"DROP INDEX {ix['name']}")
            for trigger in INSERT_TRIGGERS:
                conn.execute(f"ALTER TABLE orders DISABLE TRIGGER {trigger}")
        conn.execute(insert_sql(), {"n": n, "seed": str(seed), "until": until})
        loaded = time.perf_counter() - t0
        print(f"inserted {n:,} orders in {loaded:.1f} s ({n / loaded:,.0f}/s)", flush=True)
        if rebuild_indexes:
            t1 = time.perf_counter()
            conn.execute(SEARCH_COPY_SQL)
            print(f"  copied them into order_search in {time.perf_counter() - t1:.1f} s", flush=True)
            t1 = time.perf_counter()
            conn.execute(TOKEN_COPY_SQL)
            conn.execute(VOCAB_COPY_SQL)
            print(f"  copied their tokens into order_token(_vocab) in {time.perf_counter() - t1:.1f} s", flush=True)
            for trigger in INSERT_TRIGGERS:
                conn.execute(f"ALTER TABLE orders ENABLE TRIGGER {trigger}")
        for ix in indexes:
            t1 = time.perf_counter()
            conn.execute(ix["definition"])
            print(f"  built {ix['name']} in {time.perf_counter() - t1:.1f} s", flush=True)
        conn.commit()
    with connect(url, SCHEMA, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
    print(f"seeded {n:,} orders in {time.perf_counter() - t0:.1f} s (indexes built, vacuumed, analyzed)", flush=True)
    check(url)


def check(url: str, sample: int = 2000) -> None:
    """Every sampled row is what ``store`` writes for the order its document describes (columns and document)."""
    columns = [c.strip() for c in store._COLUMNS.split(",")]
    with connect(url, SCHEMA) as conn:
        rows = conn.execute(
            f"SELECT {store._COLUMNS.replace('doc', 'doc::text AS doc')}, doc AS doc_json "
            "FROM orders TABLESAMPLE SYSTEM (1) LIMIT %s",
            (sample,),
        ).fetchall()
    for row in rows:
        order = document.from_json(row["doc"])
        expected = dict(zip(columns, store._row(order), strict=True))
        assert document.to_doc(order) == row["doc_json"], f"document of #{row['number']} does not round-trip"
        for name in columns:
            if name != "doc":
                assert expected[name] == row[name], f"#{row['number']}: {name} {row[name]!r} != {expected[name]!r}"
    print(f"checked {len(rows)} sampled rows: columns and documents are what the store writes", flush=True)
    with connect(url, SCHEMA) as conn:
        copied = f"SELECT {SEARCH_COPY_COLUMNS}, key FROM order_search"
        source = SEARCH_COPY_SQL.removeprefix("INSERT INTO order_search ")
        [differ] = conn.execute(
            f"SELECT (SELECT count(*) FROM ({source} EXCEPT {copied}) a) "
            f"+ (SELECT count(*) FROM ({copied} EXCEPT {source}) b) AS n"
        ).fetchone().values()
    assert differ == 0, f"order_search differs from orders in {differ} rows"
    print("checked order_search: one row per order, as the triggers write it", flush=True)
    with connect(url, SCHEMA) as conn:
        copied = "SELECT token, number, placed_at, paid_at FROM order_token"
        source = TOKEN_COPY_SQL.removeprefix("INSERT INTO order_token ")
        [differ] = conn.execute(
            f"SELECT (SELECT count(*) FROM ({source} EXCEPT ALL {copied}) a) "
            f"+ (SELECT count(*) FROM ({copied} EXCEPT ALL {source}) b) "
            "+ (SELECT count(*) FROM order_token t WHERE NOT EXISTS "
            "   (SELECT 1 FROM order_token_vocab v WHERE v.token = t.token)) AS n"
        ).fetchone().values()
    assert differ == 0, f"order_token differs from orders (or lacks a vocabulary entry) in {differ} rows"
    print("checked order_token: every order's tokens, as the triggers write them, all in the vocabulary", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--until", type=datetime.fromisoformat, default=None,
                    help="the newest orders' day (default: today, UTC)")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--url", default=DEFAULT_URL, help="scratch database to (re)create (default %(default)s)")
    group.add_argument("--into", help="an existing migrated database to add the orders to")
    ap.add_argument("--drop", action="store_true", help="drop the scratch database at the end")
    args = ap.parse_args()
    until = args.until.replace(tzinfo=args.until.tzinfo or UTC) if args.until else None
    if args.into:
        seed(args.into, args.orders, seed=args.seed, until=until, rebuild_indexes=False)
        return
    create(args.url)
    try:
        seed(args.url, args.orders, seed=args.seed, until=until)
    finally:
        if args.drop:
            drop(args.url)
            print(f"dropped {args.url}")
        else:
            print(f"kept {args.url}")


if __name__ == "__main__":
    main()

