"""What the search tables' triggers (0007, 0008) cost the writes.  ``python bench/order_search_writes.py --url URL``

Times, on a migrated ``orders`` schema at ``--url`` (seeded or not), in one connection: set-based placements
(``seed_orders.insert_sql``, the same ``INSERT ... SELECT`` shape as ``store.insert_many``) of ``--batch``
orders, ``--batches`` times, each in its own transaction; then single-row saves that change a copied column
(the stage: the row trigger fires), a payment date (0008's row trigger fires too) and saves that change none
(``updated_at``: the WHEN clauses are false). ``--explain N`` first runs one batch's INSERT N times under
``EXPLAIN ANALYZE`` (rolled back) and prints the median statement time and each trigger's. Compare a database
migrated through 0006, 0007 and 0008, or one with a trigger disabled; other work on the machine shows up in
the figures, so say what ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from seed_orders import SCHEMA, insert_sql  # noqa: E402

from shared.db import connect  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--saves", type=int, default=2000)
    ap.add_argument("--explain", type=int, default=0, help="EXPLAIN ANALYZE one batch's INSERT this many times")
    args = ap.parse_args()
    until = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with connect(args.url, SCHEMA) as conn:
        conn.execute("SET timezone = 'UTC'")
        conn.commit()
        sql = insert_sql()
        if args.explain:
            explain(conn, sql, args.batch, args.explain, until)
        batches = []
        for i in range(args.batches):
            t0 = time.perf_counter()
            conn.execute(sql, {"n": args.batch, "seed": f"w{i}:{time.time_ns()}", "until": until})
            conn.commit()
            batches.append(time.perf_counter() - t0)
        per_order = sum(batches) / (args.batch * args.batches) * 1e6
        print(f"placements: {args.batches} x {args.batch} orders, median {statistics.median(batches) * 1000:.2f} ms "
              f"per batch, {per_order:.0f} us per order")
        numbers = [r["number"] for r in conn.execute(
            "SELECT number FROM orders ORDER BY number DESC LIMIT %s", (args.saves,)).fetchall()]
        conn.commit()
        for label, assignment in (("stage changed (row trigger fires)",
                                   "stage = CASE stage WHEN 'on_hold' THEN 'placed' ELSE 'on_hold' END"),
                                  ("paid_at changed (0008's row trigger too)",
                                   "paid_at = coalesce(paid_at, placed_at) + interval '1 s'"),
                                  ("updated_at only (WHEN is false)", "updated_at = updated_at + interval '1 s'")):
            samples = []
            for n in numbers:
                t0 = time.perf_counter()
                conn.execute(f"UPDATE orders SET {assignment} WHERE number = %s", (n,))
                conn.commit()
                samples.append(time.perf_counter() - t0)
            print(f"saves, {label}: {len(samples)}, median {statistics.median(samples) * 1e6:.0f} us, "
                  f"mean {statistics.mean(samples) * 1e6:.0f} us")


def explain(conn: Any, sql: str, batch: int, times: int, until: datetime) -> None:
    """Median time of one batch's INSERT and of each trigger it fires, from EXPLAIN ANALYZE (rolled back)."""
    total: list[float] = []
    triggers: dict[str, list[float]] = {}
    for i in range(times):
        row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}",
                           {"n": batch, "seed": f"e{i}:{time.time_ns()}", "until": until}).fetchone()
        conn.rollback()
        [plan] = next(iter(row.values()))
        total.append(plan["Execution Time"])
        for t in plan.get("Triggers", []):
            triggers.setdefault(t["Trigger Name"], []).append(t["Time"])
    print(f"one INSERT of {batch} orders (EXPLAIN ANALYZE, median of {times}): "
          f"{statistics.median(total):.2f} ms; triggers: "
          + ", ".join(f"{name} {statistics.median(v):.2f} ms" for name, v in sorted(triggers.items())))


if __name__ == "__main__":
    main()
