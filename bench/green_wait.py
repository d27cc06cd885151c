"""psycopg under eventlet: client CPU per transaction with psycopg's green ``wait_selector`` against
``shared.green_wait`` (one hub ``trampoline`` per round trip): ``python bench/green_wait.py``.

Each run is a fresh process (monkey-patched as ``shared.runtime`` does it) in which N green threads, each on
its own connection, run transactions of four round trips (BEGIN, two SELECTs, COMMIT) against the local
Postgres; it reports the process's CPU per transaction. The two waits alternate, ``--pairs`` times, and the
medians and their ratio are printed: compare them, not the absolute figures (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import os, sys, json, time
os.environ["PSYCOPG_WAIT_FUNC"] = "wait_selector"
import eventlet
eventlet.monkey_patch()
wait, url, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if wait == "hub":
    from shared import green_wait
    green_wait.install()
import psycopg

conns = [psycopg.connect(url) for _ in range(threads)]

def work(conn):
    for _ in range(n // threads):
        with conn.transaction():
            conn.execute("SELECT 1").fetchone()
            conn.execute("SELECT %s::int", (2,)).fetchone()

pool = eventlet.GreenPool()
cpu0, wall0 = time.process_time(), time.perf_counter()
for conn in conns:
    pool.spawn(work, conn)
pool.waitall()
done = n // threads * threads
print(json.dumps({"cpu_us": (time.process_time() - cpu0) / done * 1e6,
                  "wall_us": (time.perf_counter() - wall0) / done * 1e6}))
'''


def run(wait: str, url: str, transactions: int, threads: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", CHILD, wait, url, str(transactions), str(threads)], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--transactions", type=int, default=8000)
    ap.add_argument("--threads", type=int, default=16, help="green threads, one connection each")
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    got: dict[str, list[float]] = {"selector": [], "hub": []}
    for i in range(args.pairs):
        for wait in got:
            r = run(wait, args.url, args.transactions, args.threads)
            got[wait].append(r["cpu_us"])
            print(f"pair {i + 1}: {wait:8} {r['cpu_us']:6.0f} us CPU, {r['wall_us']:6.0f} us wall per transaction",
                  flush=True)
    sel, hub = statistics.median(got["selector"]), statistics.median(got["hub"])
    print(f"median CPU per transaction (4 round trips): wait_selector {sel:.0f} us, hub {hub:.0f} us, "
          f"hub / selector = {hub / sel:.2f}")


if __name__ == "__main__":
    main()
