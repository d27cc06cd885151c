"""Keep the development system up: start its processes, restart one that crashes, give up on a crash loop.

``oms run`` with no argument runs every process of the system on a developer's machine. One of them dying
(killed, out of memory, a bug hit by a request) must not take the others down with it: the supervisor starts
it again after a short wait that doubles with each recent crash (1 s, 2 s, 4 s … capped), and says so. Only a
process that keeps crashing (``crash_limit`` times within ``window`` seconds) stops everything, with the
reason: restarting it for ever would hide the error in a scrolling log.

Crashes are counted over a sliding window, so a process that stays up for ``window`` seconds starts again
from "crash 1" with the shortest wait. In production the platform (Kubernetes, compose ``restart:``) does this
job; there ``oms run NAME`` runs one service with no supervisor.

Why not a library: supervisord and circus are daemons with their own configuration files and control
sockets; honcho and foreman stop everything when one process exits. What is needed here is small enough to
read in one sitting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    """When a crashed process is started again, and when crashing stops everything."""

    crash_limit: int = 5
    """That many crashes of one process within ``window`` seconds stop everything; 1 = stop on the first."""
    window: float = 60.0
    first_delay: float = 1.0
    """The wait before the first restart; it doubles with each crash within the window."""
    max_delay: float = 30.0

    def delay(self, recent_crashes: int) -> float:
        """Wait before restarting after the ``recent_crashes``-th crash of the window (1, 2, 3 …)."""
        return float(min(self.first_delay * 2 ** max(0, recent_crashes - 1), self.max_delay))


def describe_exit(returncode: int) -> str:
    """``-9 (SIGKILL)`` for a process killed by a signal, ``1`` for an exit status."""
    if returncode < 0:
        try:
            return f"{returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            pass
    return str(returncode)


def _seconds(value: float) -> str:
    return f"{value:g} s"


@dataclass
class _Child:
    name: str
    command: list[str]
    env: dict[str, str] | None = None
    """Variables added to this process's environment (its own metrics port), None: ours unchanged."""
    proc: subprocess.Popen[bytes] | None = None
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


class Supervisor:
    """Runs ``commands`` (name -> argv), each in its own session so a terminal's Ctrl-C reaches only us.

    ``say`` prints one line for the developer (the console). ``check`` does one round of watching and is
    called in a loop by the caller, which also owns signal handling and the start banner. ``envs`` (name ->
    variables) gives a process variables of its own on top of ours: two processes of one service must not
    both try to listen on the same metrics port.
    """

    def __init__(
        self,
        commands: Mapping[str, list[str]],
        policy: RestartPolicy | None = None,
        say: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
        envs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self._say = say
        self._clock = clock
        envs = envs or {}
        self._children = {
            name: _Child(name, list(cmd), dict(envs[name]) if name in envs else None) for name, cmd in commands.items()
        }

    def start(self) -> None:
        for child in self._children.values():
            self._start(child)

    def pids(self) -> dict[str, int]:
        """The running processes' ids, by name (for a developer who wants to look at or kill one)."""
        return {c.name: c.proc.pid for c in self._children.values() if c.proc and c.proc.poll() is None}

    def check(self) -> str | None:
        """Notice processes that exited, restart those whose wait is over; the reason to stop everything, if any."""
        now = self._clock()
        for child in self._children.values():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    self._start(child)
                continue
            if child.proc is None or child.proc.poll() is None:
                continue
            reason = self._crashed(child, child.proc.returncode, now)
            if reason:
                return reason
        return None

    def _crashed(self, child: _Child, returncode: int, now: float) -> str | None:
        while child.crashes and child.crashes[0] <= now - self.policy.window:
            child.crashes.popleft()
        child.crashes.append(now)
        count, limit = len(child.crashes), self.policy.crash_limit
        exit_text = describe_exit(returncode)
        if count >= limit:
            return (
                f"{child.name} exited with {exit_text}: it crashed {count} time(s) in the last "
                f"{_seconds(self.policy.window)}; stopping everything (see its output above)"
            )
        delay = self.policy.delay(count)
        child.restart_at = now + delay
        self._say(
            f"{child.name} exited with {exit_text}; restarting in {_seconds(delay)} "
            f"(crash {count} of {limit} in the last {_seconds(self.policy.window)})"
        )
        return None

    def _start(self, child: _Child) -> None:
        again = child.proc is not None
        env = {**os.environ, **child.env} if child.env is not None else None
        child.proc = subprocess.Popen(child.command, start_new_session=True, env=env)
        self._say(f"{'restarted' if again else 'started'} {child.name} (pid {child.proc.pid})")

    def stop_all(self, grace: float = 20.0) -> None:
        """SIGTERM to every running process, SIGKILL to those still running after ``grace`` seconds."""
        running = [c for c in self._children.values() if c.proc and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"{child.name} did not stop in time; killing it")
                child.proc.kill()
                child.proc.wait()
        self._say("stopped.")
