"""``oms run`` (development) as a developer runs it: a killed service comes back, a crash loop stops everything.

Each test migrates and runs the whole system on a database and vhost of its own (not the session's), so no
process of the other e2e tests answers in place of the one that was killed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import Servers, _create_vhost, _delete_vhost, _vhost_url
from tests.e2e.conftest import free_port, until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OMS = [sys.executable, "-m", "oms.cli"]
ORDER = {
    "channel": "web",
    "customer": {"name": "Lena Vogel", "phone": "+49 30 1234567"},
    "items": [{"sku": "MUG-1", "name": "Mug", "quantity": 1, "unit_price": "8.00"}],
    "currency": "EUR",
}


class Output:
    """``oms run``'s output (its own lines and its children's), collected in a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no line matches {pattern!r} in:\n" + "\n".join(self.lines[-60:]))

    def pids(self) -> set[int]:
        return {int(m.group(1)) for line in self.lines if (m := re.search(r"started \S+ \(pid (\d+)\)", line))}


def _child_pid(parent: int, *argv: str) -> int:
    """The pid of ``parent``'s child process whose command line ends with ``argv`` (from /proc, Linux)."""
    children = " ".join(p.read_text() for p in Path(f"/proc/{parent}/task").glob("*/children")).split()
    for pid in children:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        if cmdline[-len(argv):] == list(argv):
            return int(pid)
    raise AssertionError(f"{parent} has no child {' '.join(argv)}")


@pytest.fixture()
def own_system(servers: Servers, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a system of its own, migrated with ``oms migrate``; dropped afterwards."""
    import psycopg

    name = f"{servers.vhost}_run_{uuid.uuid4().hex[:6]}"
    _create_vhost(servers.amqp_base_url, name)
    database_url = servers.database_url.rsplit("/", 1)[0] + "/" + name
    port, sandbox_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OMS_")},
        "OMS_DATABASE_URL": database_url,
        "OMS_AMQP_URL": _vhost_url(servers.amqp_base_url, name),
        "OMS_STATE_DIR": str(tmp_path / "state"),
        "OMS_HTTP_HOST": "127.0.0.1",
        "OMS_HTTP_PORT": str(port),
        "OMS_SANDBOX_PORT": str(sandbox_port),
        "OMS_SANDBOX_PROVIDER_URL": f"http://127.0.0.1:{sandbox_port}",
        "OMS_RETRY_DELAYS": "1,1,1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONWARNINGS": "ignore",
        "COLUMNS": "80",
    }
    try:
        subprocess.run([*OMS, "migrate"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
        yield env
    finally:
        _delete_vhost(servers.amqp_base_url, name)
        with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _oms_run(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], Output]:
    proc = subprocess.Popen(
        [*OMS, "run", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    return proc, Output(proc.stdout)


def _end(proc: subprocess.Popen[str], out: Output) -> None:
    """However the test went: ``oms run`` and every process it started are gone afterwards."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in out.pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_killed_service_is_restarted_and_orders_are_placed_and_read_again(own_system: dict[str, str]) -> None:
    proc, out = _oms_run(own_system)
    try:
        out.wait_for("OMS is running", timeout=90)
        orders_pid = _child_pid(proc.pid, "shared.runtime", "orders")
        base = f"http://127.0.0.1:{own_system['OMS_HTTP_PORT']}/api/v1"
        key = (Path(own_system["OMS_STATE_DIR"]) / "dev-api-key").read_text().strip()
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=15)
        before = api.post("/orders", json=ORDER)
        assert before.status_code == 201, before.text

        os.kill(orders_pid, signal.SIGKILL)

        out.wait_for(r"orders exited with -9 \(SIGKILL\); restarting in 1 s \(crash 1 of 5 in the last 60 s\)")
        new_pid = int(out.wait_for(r"restarted orders \(pid (\d+)\)").group(1))
        assert new_pid != orders_pid and _child_pid(proc.pid, "shared.runtime", "orders") == new_pid
        assert proc.poll() is None, "oms run stopped"
        after = until(lambda: (r := api.post("/orders", json=ORDER)).status_code == 201 and r, "an order placed")
        number = after.json()["number"]
        assert api.get(f"/orders/{number}").json()["id"] == after.json()["id"]
        assert api.get(f"/orders/{before.json()['number']}").status_code == 200
        assert not any("stopping everything" in line for line in out.lines)
        assert f"started orders (pid {orders_pid})" in out.lines  # a developer can see which process is which

        proc.send_signal(signal.SIGINT)  # Ctrl-C still stops everything, cleanly
        assert proc.wait(timeout=40) == 0
        out.wait_for("^stopped.$", timeout=5)
    finally:
        _end(proc, out)


def test_a_service_that_keeps_crashing_stops_everything_and_says_why(own_system: dict[str, str]) -> None:
    """The sandbox provider's port is taken (a common developer mishap): it crashes at every start."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(own_system["OMS_SANDBOX_PORT"])))
        taken.listen()
        proc, out = _oms_run(own_system, "--crash-limit", "3", "--restart-delay", "0.2")
        try:
            out.wait_for(r"sandbox-provider exited with \d+; restarting in 0.2 s \(crash 1 of 3 in the last 60 s\)")
            out.wait_for(r"sandbox-provider exited with \d+; restarting in 0.4 s \(crash 2 of 3 in the last 60 s\)")
            assert proc.wait(timeout=60) == 1
            out.wait_for(
                r"sandbox-provider exited with \d+: it crashed 3 time\(s\) in the last 60 s; stopping everything",
                timeout=5,
            )
            out.wait_for("^stopped.$", timeout=5)
        finally:
            _end(proc, out)
