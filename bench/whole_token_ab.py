"""Whole-token search, paired: the token path vs the trigram path for the same terms, alternated query by query
in one connection.  ``python bench/whole_token_ab.py --url URL``

On a seeded database (``seed_orders.py``, migrated through 0008), for each term and each of the list's sorts it
times ``store.list_orders``'s first page ``--runs`` times with the token path (``store._whole_token`` as is:
its vocabulary check included) and as many times with it switched off (the trigram path 0007 takes), the two
alternated so both see the same load on a shared machine. Prints p50 / p99 ms of each and the ratio of the p50s;
with ``--explain`` also the EXPLAIN (ANALYZE, BUFFERS) of each path's page statement.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from list_orders import SORTS, Recorder, percentile  # noqa: E402

from services.orders import store  # noqa: E402
from services.orders.contracts.schemas import OrderQuery  # noqa: E402
from shared.db import connect  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--term", action="append", help="terms (default: mug-navy-xs and one stored e-mail address)")
    ap.add_argument("--explain", action="store_true")
    args = ap.parse_args()
    whole_token = store._whole_token
    with connect(args.url, "orders") as conn:
        rec = Recorder(conn)
        terms = args.term or ["mug-navy-xs", conn.execute(
            "SELECT customer_email FROM orders WHERE customer_email IS NOT NULL ORDER BY number LIMIT 1 OFFSET 400000"
        ).fetchone()["customer_email"]]
        print("| term | sort | token path p50 / p99 | trigram path p50 / p99 | p50 ratio |\n|---|---|---:|---:|---:|")
        for term in terms:
            for sort, direction in SORTS:
                query = OrderQuery(q=term, sort=sort, direction=direction)
                samples: dict[str, list[float]] = {"token": [], "trigram": []}
                statements: dict[str, tuple[str, Any]] = {}
                for i in range(args.runs * 2):
                    path = "token" if i % 2 == 0 else "trigram"
                    store._whole_token = whole_token if path == "token" else (lambda tx, q: None)  # type: ignore[assignment]
                    t0 = time.perf_counter()
                    store.list_orders(rec, query)  # type: ignore[arg-type]
                    samples[path].append((time.perf_counter() - t0) * 1000)
                    statements[path] = rec.last
                    conn.commit()
                store._whole_token = whole_token  # type: ignore[assignment]
                a, b = samples["token"], samples["trigram"]
                ratio = statistics.median(b) / statistics.median(a)
                print(f"| {term} | {sort} {direction} | {statistics.median(a):.1f} / {percentile(a, 0.99):.1f} | "
                      f"{statistics.median(b):.1f} / {percentile(b, 0.99):.1f} | {ratio:.1f}x |", flush=True)
                if args.explain:
                    for path, (sql, params) in statements.items():
                        print(f"\n{path} path, {term}, {sort} {direction}:")
                        for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params).fetchall():
                            print("    " + r["QUERY PLAN"])
                        conn.commit()
                    print()


if __name__ == "__main__":
    main()
