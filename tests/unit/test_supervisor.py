"""``oms run`` in development: a crashed process is restarted with a growing wait, a crash loop stops everything,
and the start banner stays whole in a log.

The supervisor runs real (tiny) Python processes; its clock is the test's, so the waits cost no time.
"""

from __future__ import annotations

import sys
import time

import pytest

from oms.cli.supervisor import RestartPolicy, Supervisor

pytestmark = pytest.mark.unit

CRASHES = [sys.executable, "-c", "raise SystemExit(3)"]
STAYS_UP = [sys.executable, "-c", "import time; time.sleep(120)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _until_exited(supervisor: Supervisor, name: str) -> None:
    """Wait (no fixed time) until ``name`` has exited, as the supervisor's next look would find it."""
    deadline = time.monotonic() + 30
    while name in supervisor.pids():
        assert time.monotonic() < deadline, f"{name} did not exit"
        time.sleep(0.01)


def test_a_crashing_process_is_restarted_with_a_doubling_wait_then_a_crash_loop_stops_everything() -> None:
    said: list[str] = []
    clock = Clock()
    sup = Supervisor({"crasher": CRASHES, "steady": STAYS_UP}, RestartPolicy(crash_limit=3), said.append, clock)
    sup.start()
    try:
        steady = sup.pids()["steady"]
        assert f"started steady (pid {steady})" in said

        _until_exited(sup, "crasher")
        assert sup.check() is None
        assert said[-1] == "crasher exited with 3; restarting in 1 s (crash 1 of 3 in the last 60 s)"
        clock.now += 0.5
        assert sup.check() is None and "crasher" not in sup.pids()  # still waiting
        clock.now += 0.5
        assert sup.check() is None
        assert said[-1].startswith("restarted crasher (pid ")

        _until_exited(sup, "crasher")
        assert sup.check() is None
        assert said[-1] == "crasher exited with 3; restarting in 2 s (crash 2 of 3 in the last 60 s)"
        clock.now += 2
        sup.check()
        _until_exited(sup, "crasher")
        reason = sup.check()
        assert reason == (
            "crasher exited with 3: it crashed 3 time(s) in the last 60 s; stopping everything (see its output above)"
        )
        assert sup.pids() == {"steady": steady}  # the others ran on until the end
    finally:
        sup.stop_all()
    assert said[-1] == "stopped."
    assert sup.pids() == {}


def test_a_process_that_stayed_up_for_the_window_starts_again_from_the_first_crash() -> None:
    said: list[str] = []
    clock = Clock()
    sup = Supervisor({"crasher": CRASHES}, RestartPolicy(crash_limit=2, window=60), said.append, clock)
    sup.start()
    try:
        _until_exited(sup, "crasher")
        assert sup.check() is None
        assert said[-1].endswith("restarting in 1 s (crash 1 of 2 in the last 60 s)")
        clock.now += 1
        sup.check()  # restarted; it "stays up" for a minute of the test's clock
        _until_exited(sup, "crasher")
        clock.now += 60
        assert sup.check() is None  # not the 2nd crash in a minute: no reason to stop
        assert said[-1].endswith("restarting in 1 s (crash 1 of 2 in the last 60 s)")
    finally:
        sup.stop_all()


def test_a_killed_process_is_named_by_its_signal_and_the_wait_is_capped() -> None:
    from oms.cli.supervisor import describe_exit

    assert describe_exit(-9) == "-9 (SIGKILL)"
    assert describe_exit(1) == "1"
    policy = RestartPolicy(first_delay=1, max_delay=30)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_the_start_banner_keeps_addresses_and_the_key_on_one_line_in_a_log(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """stdout is not a terminal here (as in ``make run > log``), so rich would wrap at 80 columns."""
    from oms.cli.system import print_banner

    monkeypatch.delenv("COLUMNS", raising=False)
    base = "http://orders-gateway.internal.merchant-with-a-long-name.example.com:18080"
    key = "oms_" + "k" * 60
    print_banner(["gateway", "orders", "payments", "sandbox-provider"], base, key)
    lines = capsys.readouterr().out.splitlines()

    def line_with(text: str) -> str:
        found = [line for line in lines if text in line]
        assert found, f"{text!r} is not whole on any line of:\n" + "\n".join(lines)
        return found[0]

    assert "OMS is running" in line_with("gateway, orders, payments, sandbox-provider")
    api = line_with(f"API:      {base}/api/v1 ")
    assert f"(OpenAPI: {base}/api/v1/openapi.json, docs: {base}/api/v1/docs)" in api
    assert line_with(key).endswith(f"API key:  {key}   (send as 'Authorization: Bearer <key>')")
    assert "Ctrl-C stops everything" in line_with("Events:   oms events tail")
