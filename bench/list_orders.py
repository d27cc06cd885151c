"""How fast is the order list with a realistic shop's worth of orders?  ``python bench/list_orders.py --orders 100000``

Creates a scratch database (``oms_bench_list``, dropped first and at the end unless ``--keep``), migrates the
``orders`` schema exactly as ``oms migrate`` does, bulk-loads N orders with COPY (the same columns as
``store.insert``, each ``domain.Order`` stored as the store stores it), ANALYZEs, then times
``store.list_orders`` for the queries the order list page makes and prints median / p99 per query plus the
EXPLAIN of the slowest one.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from services.orders import domain, store  # noqa: E402
from services.orders.contracts.schemas import (  # noqa: E402
    Address,
    Channel,
    Customer,
    OrderQuery,
    PaymentMethodChoice,
    Stage,
)
from shared.db import connect, with_database  # noqa: E402
from shared.migrate import SHARED_MIGRATIONS, migrate_schema  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/oms_bench_list"
SCHEMA = "orders"
SLOW_MS = 50.0

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
# Where a year-old shop's orders are: most are finished, a few are in flight.
STAGES = [(Stage.archived, 30), (Stage.delivered, 30), (Stage.shipped, 5), (Stage.processed, 3), (Stage.approved, 3),
          (Stage.confirmed, 4), (Stage.placed, 4), (Stage.on_hold, 1), (Stage.cancelled, 6), (Stage.rejected, 2),
          (Stage.abandoned, 8), (Stage.returned, 4)]
CHANNELS = [(Channel.web, 45), (Channel.whatsapp, 25), (Channel.marketplace, 15), (Channel.pos, 8),
            (Channel.manual, 4), (Channel.chat, 2), (Channel.test, 1)]
METHODS = [(PaymentMethodChoice.card, 55), (PaymentMethodChoice.cash_on_delivery, 30),
           (PaymentMethodChoice.bank_transfer, 10), (PaymentMethodChoice.pos_on_delivery, 5)]
SHIPPED_OR_LATER = {Stage.shipped, Stage.delivered, Stage.returned, Stage.archived}


def _pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def make_order(rng: random.Random, number: int, placed_at: datetime) -> domain.Order:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    phone = None
    if rng.random() < 0.8:
        prefix = rng.choice(["98450", "99001", "97310", "90080", "81234", "70221"])
        phone = rng.choice([f"+91 {prefix} {rng.randrange(10000, 99999)}",
                            f"+49 30 {rng.randrange(1000000, 9999999)}", f"+34 6{rng.randrange(10000000, 99999999)}"])
    email = f"{first}.{last}{rng.randrange(1, 999)}@example.com".lower() if rng.random() < 0.85 else None
    items = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
        sku = f"{rng.choice(PRODUCTS)}-{rng.choice(COLOURS)}-{rng.choice(SIZES)}"
        qty = rng.choice([1, 1, 1, 2, 3])
        price = Decimal(rng.randrange(299, 9999)) / 100
        items.append(domain.LineItem(sku=sku, name=sku.title(), quantity=qty, unit_price=price,
                                  line_total=price * qty))
    shipping = Decimal(rng.choice([0, 490, 990])) / 100
    totals = domain.compute_totals([(i.quantity, i.unit_price) for i in items], "EUR", shipping, Decimal(0),
                                   Decimal(0))
    stage = _pick(rng, STAGES)
    channel = _pick(rng, CHANNELS)
    method = _pick(rng, METHODS)
    in_placed = stage in (Stage.placed, Stage.abandoned)
    address = None
    if not in_placed or rng.random() < 0.4:
        city, country = rng.choice(CITIES)
        address = Address(line1=f"{rng.randrange(1, 300)} Main Street", city=city, country=country)
    paid_at = None
    if method == PaymentMethodChoice.card and not in_placed and stage not in (Stage.rejected,):
        paid_at = placed_at + timedelta(minutes=rng.randrange(1, 120))
    elif stage in SHIPPED_OR_LATER and stage != Stage.shipped:
        paid_at = placed_at + timedelta(days=rng.randrange(2, 9))  # cash collected at the door
    changed = placed_at + timedelta(hours=rng.randrange(0, 24 * 10))
    return domain.Order(
        id=uuid.uuid4(), number=number, channel=channel, stage=stage,
        held_from=Stage.confirmed if stage == Stage.on_hold else None,
        customer=Customer(name=f"{first} {last}", phone=phone, email=email), items=tuple(items), currency="EUR",
        totals=totals, shipping_address=address, payment_method=None if stage == Stage.abandoned else method,
        paid_at=paid_at, payment_status="succeeded" if paid_at and method == PaymentMethodChoice.card else None,
        customer_note_skipped=not in_placed, test=channel == Channel.test or rng.random() < 0.01,
        placed_at=placed_at, stage_changed_at=changed, created_at=placed_at, updated_at=changed,
        version=rng.randrange(1, 9), history_seq=rng.randrange(1, 9),
    )


def recreate(url: str) -> None:
    admin = with_database(url, "postgres")
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    applied = migrate_schema(url, SCHEMA, [SHARED_MIGRATIONS, ROOT / "services" / "orders" / "migrations"])
    print(f"migrated {SCHEMA}: {', '.join(applied)}")


def drop(url: str) -> None:
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def load(url: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    span = 730 * 86400  # two years of orders
    # Placed times ascend with the number (as in life), at whole seconds so some orders share one.
    times = sorted(start + timedelta(seconds=rng.randrange(span)) for _ in range(n))
    columns = f"{store._COLUMNS}, idempotency_key, request_hash"
    t0 = time.perf_counter()
    with connect(url, SCHEMA) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY orders ({columns}) FROM STDIN") as copy:
            for i, placed_at in enumerate(times):
                order = make_order(rng, 1001 + i, placed_at)
                copy.write_row((*store._row(order), None, None))
        conn.execute("SELECT setval('order_number_seq', %s)", (1000 + n,))
        conn.commit()
    built = time.perf_counter() - t0
    with connect(url, SCHEMA, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE orders")
    print(f"loaded {n} orders in {built:.1f} s ({n / built:,.0f}/s), vacuumed and analyzed")


class Recorder:
    """A connection stand-in that remembers the last statement ``store.list_orders`` ran (for EXPLAIN)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.last: tuple[str, Any] = ("", None)

    def execute(self, sql: str, params: Any = None) -> Any:
        self.last = (sql, params)
        return self.conn.execute(sql, params)


def deep_cursor(rec: Recorder, pages: int, limit: int) -> str:
    cursor: str | None = None
    for _ in range(pages):
        _, cursor = store.list_orders(rec, OrderQuery(limit=limit, cursor=cursor))  # type: ignore[arg-type]
    assert cursor is not None, "fewer orders than pages"
    return cursor


def timed(rec: Recorder, query: OrderQuery, runs: int) -> tuple[float, float, int, tuple[str, Any]]:
    samples = []
    rows = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        orders, _ = store.list_orders(rec, query)  # type: ignore[arg-type]
        samples.append((time.perf_counter() - t0) * 1000)
        rows = len(orders)
    samples.sort()
    p99 = samples[max(0, math.ceil(0.99 * len(samples)) - 1)]
    return statistics.median(samples), p99, rows, rec.last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = ap.parse_args()

    recreate(args.url)
    try:
        load(args.url, args.orders, args.seed)
        with connect(args.url, SCHEMA, autocommit=True) as conn:
            rec = Recorder(conn)
            deep_pages = min(1000, max(1, args.orders // 50 - 1))
            t0 = time.perf_counter()
            deep = deep_cursor(rec, deep_pages, 50)
            walk_s = time.perf_counter() - t0
            middle = 1001 + args.orders // 2
            queries = {
                "first page (newest 50)": OrderQuery(),
                f"page {deep_pages + 1} via cursor": OrderQuery(cursor=deep),
                "stage=confirmed": OrderQuery(stage=[Stage.confirmed]),
                "stage=archived (30%)": OrderQuery(stage=[Stage.archived]),
                "stage=placed,on_hold": OrderQuery(stage=[Stage.placed, Stage.on_hold]),
                "channel=pos, test=false": OrderQuery(channel=[Channel.pos], test=False),
                "last 7 days of data": OrderQuery(placed_from=datetime(2025, 12, 24, tzinfo=UTC)),
                "name 'priya' (common)": OrderQuery(q="priya"),
                "name 'ramanathan' (1/32)": OrderQuery(q="Ramanathan"),
                "name 'nakamura' + stage=placed": OrderQuery(q="nakamura", stage=[Stage.placed]),
                "phone digits '98450'": OrderQuery(q="98450"),
                "e-mail 'zoe.okafor'": OrderQuery(q="zoe.okafor"),
                "SKU 'mug-navy-xs'": OrderQuery(q="mug-navy-xs"),
                "no match 'zzqx'": OrderQuery(q="zzqx"),
                f"number '#{middle}'": OrderQuery(q=f"#{middle}"),
                "sort paid_at desc": OrderQuery(sort="paid_at", direction="desc"),
                "sort paid_at asc": OrderQuery(sort="paid_at", direction="asc"),
            }
            results = {name: timed(rec, q, args.runs) for name, q in queries.items()}

            print(f"\n{args.orders:,} orders, {args.runs} runs per query, limit 50 "
                  f"(walking {deep_pages} pages for the deep cursor took {walk_s:.2f} s)\n")
            print(f"| {'query':<34} | {'rows':>4} | {'median ms':>9} | {'p99 ms':>8} |")
            print(f"|{'-' * 36}|{'-' * 6}|{'-' * 11}|{'-' * 10}|")
            for name, (med, p99, rows, _) in results.items():
                flag = "  <-- slow" if med > SLOW_MS else ""
                print(f"| {name:<34} | {rows:>4} | {med:>9.2f} | {p99:>8.2f} |{flag}")
            slowest = max(results, key=lambda k: results[k][0])
            sql, params = results[slowest][3]
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) of the slowest, {slowest!r}:\n")
            for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params).fetchall():
                print("  " + r["QUERY PLAN"])
            slow = [k for k, v in results.items() if v[0] > SLOW_MS]
            print(f"\nslow (> {SLOW_MS:.0f} ms median): {', '.join(slow) if slow else 'none'}")
    finally:
        if args.keep:
            print(f"kept {args.url}")
        else:
            drop(args.url)
            print(f"dropped {args.url}")


if __name__ == "__main__":
    main()
