"""psycopg's wait function for services under eventlet: wait on the hub itself, not through a selector.

psycopg drives every round trip with a generator and a *wait function* that sleeps until the socket is ready.
Under eventlet it must be a green one (``PSYCOPG_WAIT_FUNC=wait_selector``: one query must not block every
green thread), but that one builds a selector per statement, registers the socket, and asks eventlet's green
``select`` with a 0.1 s tick, which builds its own listeners and a timer: about half of a service's client CPU
per statement went to waiting (bench/RESULTS.md, "Profile of a card order"). Here each wait is one
``trampoline`` on the socket, the hub's own primitive, and a timer only when the caller set a deadline.

What the 0.1 s tick gave, and why it is not needed here: psycopg wakes up every tick so that Ctrl-C can
interrupt a blocking C ``select`` and so that a socket closed under it is noticed. Under eventlet no wait
blocks the process (signals reach the hub), and a connection the server or the network closes makes the
socket readable, which wakes the wait as any answer does. A wait with a deadline (``notifies(timeout=...)``,
the outbox relay's idle sleep) still ends at the deadline with psycopg's ``_WaitTimeout``, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import Any


class _Elapsed(Exception):
    """Raised into the waiting green thread by the hub when the deadline passes (never escapes this module)."""


def make_wait_green() -> Callable[..., Any]:
    """The wait function, with eventlet's and psycopg's names bound once (this runs after monkey-patching:
    psycopg must not be imported before it)."""
    from eventlet.green import select
    from eventlet.hubs import trampoline
    from psycopg import errors
    from psycopg.waiting import Ready, Wait

    def wait_green(gen: Any, fileno: int, interval: float | None = 0.0, timeout: float | None = None) -> Any:
        """Consume ``gen`` as ``psycopg.waiting.wait_selector`` does, waiting on eventlet's hub."""
        if interval is None:
            raise ValueError("indefinite wait not supported anymore")  # psycopg's own contract
        deadline = monotonic() + timeout if timeout is not None else None
        try:
            state = next(gen)
            while True:
                left = None if deadline is None else max(0.0, deadline - monotonic())
                try:
                    if state == Wait.R:
                        trampoline(fileno, read=True, timeout=left, timeout_exc=_Elapsed)
                        ready = Ready.R
                    elif state == Wait.W:
                        trampoline(fileno, write=True, timeout=left, timeout_exc=_Elapsed)
                        ready = Ready.W
                    else:  # both (pipeline mode: results to read while requests are still being written)
                        readable, writable, _ = select.select([fileno], [fileno], [], left)
                        ready = Ready.RW if readable and writable else Ready.R if readable else Ready.W if writable \
                            else Ready.NONE
                except _Elapsed:
                    ready = Ready.NONE
                state = gen.send(ready)
                # Checked after resuming the generator, as psycopg does: data already there is handled, and a
                # timeout of 0 polls once.
                if deadline is not None and monotonic() >= deadline:
                    raise errors._WaitTimeout("wait timeout expired")
        except StopIteration as done:
            return done.value

    return wait_green


def install() -> None:
    """Make every psycopg connection of this process wait on eventlet's hub. psycopg looks ``waiting.wait`` up
    at each call, so connections opened before are covered too."""
    from psycopg import waiting

    waiting.wait = make_wait_green()
