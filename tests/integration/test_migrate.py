"""`oms migrate` on a brand-new database, twice, and from two processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import Servers

pytestmark = pytest.mark.integration


def test_two_concurrent_migrations_on_a_new_database_both_succeed_and_a_third_changes_nothing(
    servers: Servers,
) -> None:
    import psycopg

    name = f"oms_migrate_{uuid.uuid4().hex[:8]}"
    url = urlunsplit(urlsplit(servers.database_url)._replace(path="/" + name))
    env = {**os.environ, "OMS_DATABASE_URL": url, "OMS_AMQP_URL": servers.amqp_url, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-c", "from oms.cli import app; app()", "migrate"]
    try:
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
        outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        # Exactly one of them applied the orders migrations; the other found them done.
        assert sum("0001_orders" in out for out in outputs) == 1, outputs
        third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert third.returncode == 0 and "0001_orders" not in third.stdout
        assert "orders: up to date" in third.stdout
        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema IN ('orders', 'gateway')").fetchall()}
        assert {"orders.orders", "orders.outbox", "orders.inbox", "gateway.api_keys"} <= tables
    finally:
        with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
