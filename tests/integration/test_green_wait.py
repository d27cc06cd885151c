"""psycopg waiting on eventlet's hub (``shared.green_wait``), as every Nameko service runs it: queries of
different green threads overlap, a wait with a deadline ends at it (the relay's idle sleep on LISTEN), pipeline
mode's two-way waits work, and a connection the server kills fails its query instead of hanging.

The checks run in a subprocess: they need eventlet's monkey-patching, which the test process must not have."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Servers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import os, sys, json, time
os.environ["PSYCOPG_WAIT_FUNC"] = "wait_selector"  # as shared.runtime: a green wait at import time
import eventlet
eventlet.monkey_patch()
from shared import green_wait
green_wait.install()
import psycopg
from psycopg import waiting

url = sys.argv[1]
out = {"installed": waiting.wait.__name__}

# Two green threads: a slow query on one connection must not hold up the other's short ones.
slow, quick = psycopg.connect(url, autocommit=True), psycopg.connect(url, autocommit=True)
t0 = time.monotonic()
sleeper = eventlet.spawn(lambda: slow.execute("SELECT pg_sleep(0.6)").fetchone())
eventlet.sleep(0)
answers = [quick.execute("SELECT %s::int", (n,)).fetchone()[0] for n in range(20)]
quick_done = time.monotonic() - t0
sleeper.wait()
out["quick_answers"] = answers
out["quick_done_s"] = quick_done
out["slow_done_s"] = time.monotonic() - t0

# A wait with a deadline: nothing notified ends at the deadline; a NOTIFY ends it at once.
quick.execute("LISTEN green_wait_probe")
t0 = time.monotonic()
got = list(quick.notifies(timeout=0.4, stop_after=1))
out["idle_notifies"] = len(got)
out["idle_wait_s"] = time.monotonic() - t0
eventlet.spawn_after(0.1, lambda: slow.execute("NOTIFY green_wait_probe, 'hello'"))
t0 = time.monotonic()
got = list(quick.notifies(timeout=5, stop_after=1))
out["notified"] = [n.payload for n in got]
out["notified_wait_s"] = time.monotonic() - t0

# Pipeline mode waits for reading and writing at once.
with quick.pipeline():
    curs = [quick.execute("SELECT %s::text", ("x" * 20000 + str(n),)) for n in range(50)]
out["pipeline"] = [len(c.fetchone()[0]) for c in curs][-1]

# The server ends the connection while a query waits: the query fails, the thread does not hang.
victim = psycopg.connect(url, autocommit=True)
pid = victim.info.backend_pid
eventlet.spawn_after(0.2, lambda: slow.execute("SELECT pg_terminate_backend(%s)", (pid,)))
t0 = time.monotonic()
try:
    victim.execute("SELECT pg_sleep(30)")
    out["killed"] = "no error"
except psycopg.OperationalError as exc:
    out["killed"] = "OperationalError (" + type(exc).__name__ + ")"
out["killed_after_s"] = time.monotonic() - t0
print(json.dumps(out))
'''


def test_queries_overlap_deadlines_hold_and_a_killed_connection_fails_under_the_hub_wait(servers: Servers) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, servers.database_url], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["installed"] == "wait_green"
    assert out["quick_answers"] == list(range(20))
    assert out["quick_done_s"] < out["slow_done_s"] and out["slow_done_s"] >= 0.6
    assert out["idle_notifies"] == 0 and 0.35 <= out["idle_wait_s"] < 3
    assert out["notified"] == ["hello"] and out["notified_wait_s"] < 3
    assert out["pipeline"] == 20002
    assert out["killed"].startswith("OperationalError") and out["killed_after_s"] < 10
