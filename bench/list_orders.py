"""How fast is the order list at a million orders?  ``python bench/list_orders.py --orders 1000000``

Seeds a scratch database with ``bench/seed_orders.py`` (``oms_bench_list``: created, migrated as ``oms migrate``
does, loaded set-based; dropped at the end unless ``--keep``), or with ``--reuse`` times the one a previous
``--keep`` (or ``seed_orders.py``) left, after applying any migration added since. Then it times
``store.list_orders`` exactly as the service calls it, for every documented sort (placed_at and paid_at, each
ascending and descending) crossed with every documented filter (each stage, each channel, date ranges, test,
search by number, name, phone, e-mail and SKU) and the combinations staff use, first page (limit 50, the
default) and the page after it via the returned cursor. It prints p50 / p99 per query, a table by filter and
sort, and EXPLAIN (ANALYZE, BUFFERS) of every query whose p99 is over the 50 ms target.

Other work on the machine shows up in the p99s: say so next to any figure you record.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from seed_orders import DEFAULT_URL, SCHEMA, create, drop, migrate, seed  # noqa: E402

from services.orders import store  # noqa: E402
from services.orders.contracts.schemas import Channel, OrderQuery, Stage  # noqa: E402
from shared.db import connect  # noqa: E402

TARGET_MS = 50.0
SORTS = [("placed_at", "desc"), ("placed_at", "asc"), ("paid_at", "desc"), ("paid_at", "asc")]


class Recorder:
    """A connection stand-in that remembers the last statement ``store.list_orders`` ran (for EXPLAIN)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.last: tuple[str, Any] = ("", None)

    def execute(self, sql: str, params: Any = None, **kwargs: Any) -> Any:
        self.last = (sql, params)
        return self.conn.execute(sql, params, **kwargs)


@dataclass
class Timing:
    name: str
    sort: str
    page: int
    rows: int
    p50: float
    p99: float
    statement: tuple[str, Any]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timed(rec: Recorder, query: OrderQuery, runs: int) -> tuple[float, float, int, str | None, tuple[str, Any]]:
    samples: list[float] = []
    rows, cursor = 0, None
    for i in range(runs):
        t0 = time.perf_counter()
        orders, cursor = store.list_orders(rec, query)  # type: ignore[arg-type]
        samples.append((time.perf_counter() - t0) * 1000)
        rows = len(orders)
        if i == 2 and min(samples) > 20 * TARGET_MS:
            break  # hopeless: a few samples say enough
    return statistics.median(samples), percentile(samples, 0.99), rows, cursor, rec.last


def filters(conn: Any, until: datetime) -> dict[str, dict[str, Any]]:
    """Every documented filter, alone and in the combinations staff use; search terms taken from real rows."""
    some = conn.execute(
        "SELECT number, customer_phone, customer_email FROM orders "
        "WHERE customer_phone IS NOT NULL AND customer_email IS NOT NULL ORDER BY number OFFSET "
        "(SELECT count(*) / 2 FROM orders) LIMIT 1"
    ).fetchone()
    year_ago = until - timedelta(days=365)
    out: dict[str, dict[str, Any]] = {"(none)": {}}
    out.update({f"stage={s.value}": {"stage": [s]} for s in Stage})
    out["stage=placed,on_hold"] = {"stage": [Stage.placed, Stage.on_hold]}
    out["stage=confirmed,approved,processed"] = {"stage": [Stage.confirmed, Stage.approved, Stage.processed]}
    out["stage=cancelled,rejected,returned"] = {"stage": [Stage.cancelled, Stage.rejected, Stage.returned]}
    out.update({f"channel={c.value}": {"channel": [c]} for c in Channel})
    out["channel=web,whatsapp"] = {"channel": [Channel.web, Channel.whatsapp]}
    out["channel=manual,chat,pos"] = {"channel": [Channel.manual, Channel.chat, Channel.pos]}
    out["test=true"] = {"test": True}
    out["test=false"] = {"test": False}
    out["placed last 7 days"] = {"placed_from": until - timedelta(days=7)}
    out["placed one day a year ago"] = {"placed_from": year_ago, "placed_to": year_ago + timedelta(days=1)}
    out["placed one month a year ago"] = {"placed_from": year_ago, "placed_to": year_ago + timedelta(days=30)}
    out["placed before a year ago"] = {"placed_to": year_ago}
    out[f"q=#{some['number']} (number)"] = {"q": f"#{some['number']}"}
    out[f"q={some['number']} (number or digits)"] = {"q": str(some["number"])}
    out["q=priya (first name, 1/36)"] = {"q": "priya"}
    out["q=ramanathan (surname)"] = {"q": "Ramanathan"}
    out["q=zoe okafor (full name)"] = {"q": "Zoe Okafor"}
    out["q=<phone as typed>"] = {"q": some["customer_phone"]}
    out["q=98450 (phone part)"] = {"q": "98450"}
    out["q=<e-mail>"] = {"q": some["customer_email"]}
    out["q=zoe.okafor (e-mail part)"] = {"q": "zoe.okafor"}
    out["q=mug-navy-xs (SKU)"] = {"q": "mug-navy-xs"}
    out["q=hoodie (SKU part)"] = {"q": "hoodie"}
    out["q=zzqx (no match)"] = {"q": "zzqx"}
    out["stage=shipped, channel=web"] = {"stage": [Stage.shipped], "channel": [Channel.web]}
    out["stage=placed, test=false"] = {"stage": [Stage.placed], "test": False}
    out["channel=pos, test=false"] = {"channel": [Channel.pos], "test": False}
    out["stage=confirmed,approved,processed, channel=web, test=false"] = {
        "stage": [Stage.confirmed, Stage.approved, Stage.processed], "channel": [Channel.web], "test": False}
    out["stage=delivered, last 30 days"] = {"stage": [Stage.delivered], "placed_from": until - timedelta(days=30)}
    out["channel=marketplace, last 30 days"] = {"channel": [Channel.marketplace],
                                                "placed_from": until - timedelta(days=30)}
    out["channel=whatsapp, q=priya"] = {"channel": [Channel.whatsapp], "q": "priya"}
    out["stage=placed, q=nakamura"] = {"stage": [Stage.placed], "q": "nakamura"}
    out["q=hoodie, one month a year ago"] = {"q": "hoodie", "placed_from": year_ago,
                                             "placed_to": year_ago + timedelta(days=30)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=40, help="timed runs per query and page")
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--reuse", action="store_true", help="time the database already at --url (seeded before)")
    ap.add_argument("--only", default="", help="only filters whose name contains this")
    ap.add_argument("--json", dest="json_out", help="also write every timing to this file")
    args = ap.parse_args()

    if args.reuse:
        if migrate(args.url):
            with connect(args.url, SCHEMA, autocommit=True) as conn:
                conn.execute("VACUUM (ANALYZE) orders")
    else:
        create(args.url)
        seed(args.url, args.orders, seed=args.seed)
    try:
        run(args)
    finally:
        if args.keep or args.reuse:
            print(f"kept {args.url}")
        else:
            drop(args.url)
            print(f"dropped {args.url}")


def run(args: argparse.Namespace) -> None:
    with connect(args.url, SCHEMA, autocommit=True) as conn:
        count, newest = conn.execute("SELECT count(*) AS n, max(placed_at) AS newest FROM orders").fetchone().values()
        until = newest.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        rec = Recorder(conn)
        timings: list[Timing] = []
        chosen = {k: v for k, v in filters(conn, until).items() if args.only in k}
        t_start = time.perf_counter()
        for name, kw in chosen.items():
            for sort, direction in SORTS:
                label = f"{sort} {direction}"
                query = OrderQuery(**kw, sort=sort, direction=direction)
                p50, p99, rows, cursor, statement = timed(rec, query, args.runs)
                timings.append(Timing(name, label, 1, rows, p50, p99, statement))
                if cursor:
                    p50, p99, rows, _, statement = timed(rec, query.model_copy(update={"cursor": cursor}), args.runs)
                    timings.append(Timing(name, label, 2, rows, p50, p99, statement))
            worst = max(t.p99 for t in timings if t.name == name)
            print(f"  {name:<58} worst p99 {worst:8.2f} ms", flush=True)
        deep_p50, deep_p99 = deep_page(rec, args.runs)
        elapsed = time.perf_counter() - t_start

        print(f"\n{count:,} orders; limit 50; {args.runs} runs per query and page; {elapsed:.0f} s\n")
        print("p50 / p99 ms of the first page, by filter and sort; 'page 2' = the worst p99 of the next page via "
              "the cursor over the four sorts\n")
        header = " | ".join(f"{s} {d}" for s, d in SORTS)
        print(f"| filter | rows | {header} | page 2 p99 |")
        print("|---|---:|" + "---:|" * len(SORTS) + "---:|")
        for name in chosen:
            cells = []
            rows = 0
            for sort, direction in SORTS:
                [t] = [t for t in timings if t.name == name and t.sort == f"{sort} {direction}" and t.page == 1]
                rows = max(rows, t.rows)
                cells.append(f"{t.p50:.1f} / {t.p99:.1f}")
            second = [t.p99 for t in timings if t.name == name and t.page == 2]
            print(f"| {name} | {rows} | {' | '.join(cells)} | {max(second):.1f} |" if second else
                  f"| {name} | {rows} | {' | '.join(cells)} | – |")
        print(f"| page 1,001 via cursor (placed_at desc) | 50 | {deep_p50:.1f} / {deep_p99:.1f} | | | | |")
        first = [t for t in timings if t.page == 1]
        print(f"\nfirst pages: {len(first)} queries; p99 over {TARGET_MS:.0f} ms: "
              f"{sum(t.p99 > TARGET_MS for t in first)}; worst p99 {max(t.p99 for t in first):.1f} ms "
              f"({max(first, key=lambda t: t.p99).name}, {max(first, key=lambda t: t.p99).sort})")
        slow = sorted((t for t in timings if t.p99 > TARGET_MS), key=lambda t: -t.p99)
        print(f"all pages over {TARGET_MS:.0f} ms p99: {len(slow)}")
        for t in slow[:12]:
            sql, params = t.statement
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) of {t.name!r}, {t.sort}, page {t.page} (p99 {t.p99:.1f} ms):")
            for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params).fetchall():
                print("  " + r["QUERY PLAN"])
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(
                [{k: v for k, v in t.__dict__.items() if k != "statement"} for t in timings], indent=1))


def deep_page(rec: Recorder, runs: int) -> tuple[float, float]:
    """Page 1,001 of the default list: keyset pagination makes it cost what page 1 does."""
    cursor: str | None = None
    for _ in range(1000):
        _, cursor = store.list_orders(rec, OrderQuery(cursor=cursor))  # type: ignore[arg-type]
    p50, p99, _, _, _ = timed(rec, OrderQuery(cursor=cursor), runs)
    return p50, p99


if __name__ == "__main__":
    main()
