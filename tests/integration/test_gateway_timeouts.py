"""Requests in flight when a service dies are answered within the gateway's configured time, truthfully.

The orders service and the gateway run as real processes, the gateway with ``OMS_RPC_TIMEOUT_SECONDS=1.5``.
The orders service is frozen (SIGSTOP: it holds the requests it took) and then killed (SIGKILL) while
placements (batched by the gateway) and reads (one plain RPC call each) keep arriving. Every one of them
must get a 504 within the configured time plus a margin, and its problem must say how long it really waited.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Servers
from tests.processes import ROOT, gateway_process

pytestmark = pytest.mark.integration

TIMEOUT = 1.5
ORDER = {
    "channel": "web",
    "customer": {"name": "Timeout Tester", "email": "timeout@example.com"},
    "items": [{"sku": "SLOW-1", "name": "Slow item", "quantity": 1, "unit_price": "5.00"}],
    "currency": "EUR",
    "test": True,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _orders_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The orders service, as ``oms run`` starts it; the test owns the process (it freezes and kills it)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shared.runtime", "orders"], cwd=ROOT,
                                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"orders did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return proc


@pytest.fixture()
def system(migrated: dict[str, str], servers: Servers, tmp_path: Path) -> Iterator[tuple[str, dict[str, str],
                                                                                        subprocess.Popen[bytes]]]:
    import psycopg

    from services.gateway.auth import create_api_key

    port = _free_port()
    env = {**migrated, "OMS_HTTP_PORT": str(port), "OMS_HTTP_HOST": "127.0.0.1",
           "OMS_RPC_TIMEOUT_SECONDS": str(TIMEOUT)}
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        _id, key = create_api_key(conn, "timeout tests")
    orders = _orders_process(env, tmp_path / "orders.log")
    try:
        with gateway_process(env, tmp_path):
            yield f"http://127.0.0.1:{port}/api/v1", {"Authorization": f"Bearer {key}"}, orders
    finally:
        if orders.poll() is None:
            orders.kill()
        orders.wait()


async def _timed(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> tuple[str, float, Any]:
    started = time.monotonic()
    response = await client.request(method, url, **kwargs)
    elapsed = time.monotonic() - started
    body = response.json() if response.content else None
    return f"{method} {url.split('/')[1]}", elapsed, (response.status_code, body)


def test_requests_in_flight_when_a_service_dies_get_a_504_in_time_that_says_how_long_they_waited(
    system: tuple[str, dict[str, str], subprocess.Popen[bytes]],
) -> None:
    base, headers, orders = system

    async def scenario() -> list[tuple[str, float, Any]]:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            placed = await client.post("/orders", json=ORDER)
            assert placed.status_code == 201, placed.text
            ref = placed.json()["id"]
            orders.send_signal(signal.SIGSTOP)  # hung: it keeps the requests it has taken, answers none
            calls = []
            for i in range(36):  # requests keep arriving while the service hangs, then dies
                if i % 3 == 2:
                    calls.append(asyncio.ensure_future(_timed(client, "GET", f"/orders/{ref}")))
                else:
                    calls.append(asyncio.ensure_future(_timed(client, "POST", "/orders", json=ORDER)))
                if i == 12:
                    orders.send_signal(signal.SIGKILL)
                await asyncio.sleep(0.04)
            return list(await asyncio.gather(*calls))

    results = asyncio.run(scenario())
    paths = {what for what, _e, _a in results}
    assert paths == {"POST orders", "GET orders"}
    for what, elapsed, (status, body) in results:
        assert status == 504, (what, status, body)
        assert body["type"] == "urn:oms:problem:service-timeout"
        # Within the configured time plus a margin: not one timeout after another.
        assert elapsed < 2 * TIMEOUT, f"{what} answered after {elapsed:.2f}s with a {TIMEOUT}s timeout"
        # The message states how long the request really waited (measured in the gateway, so a little less
        # than what the client saw), not the configured figure.
        stated = float(re.search(r"(\d+(?:\.\d+)?)s", body["detail"]).group(1))  # type: ignore[union-attr]
        assert elapsed - 0.75 <= stated <= elapsed + 0.05, (what, elapsed, body["detail"])
    slowest = max(elapsed for _w, elapsed, _a in results)
    print(f"\n{len(results)} requests in flight while orders hung and died: all 504, slowest answered after "
          f"{slowest:.2f}s (timeout {TIMEOUT}s)")
