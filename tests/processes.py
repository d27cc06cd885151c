"""Start the system's real processes (Nameko services, the gateway) for integration and e2e tests.

Commands come from the service registry (``shared.registry``), as ``oms run`` takes them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def service_process(target: str, env: dict[str, str], log_dir: Path, ready: str = "started") -> Iterator[Path]:
    """Run ``python -m shared.runtime TARGET`` until the block ends; yields its log file."""
    cmd = [sys.executable, "-m", "shared.runtime", target]
    with _process(cmd, target.replace(":", "_"), env, log_dir, ready) as log:
        yield log


@contextmanager
def registry_process(
    name: str, env: dict[str, str], log_dir: Path, *, only_given_settings: bool = False
) -> Iterator[Path]:
    """Run the registry's process ``name`` (what ``oms run NAME`` runs) until the block ends."""
    from shared.registry import process

    spec = process(name)
    with _process(spec.command(), name, env, log_dir, spec.ready, only_given_settings=only_given_settings) as log:
        yield log


@contextmanager
def gateway_process(env: dict[str, str], log_dir: Path) -> Iterator[Path]:
    with registry_process("gateway", env, log_dir) as log:
        yield log


@contextmanager
def _process(
    cmd: list[str], name: str, env: dict[str, str], log_dir: Path, ready: str, *, only_given_settings: bool = False
) -> Iterator[Path]:
    """``only_given_settings``: the process sees no OMS_* variable of this process's environment, only ``env``'s
    (a deployment's environment, exactly)."""
    log = log_dir / f"{name}.log"
    inherited = {k: v for k, v in os.environ.items() if not (only_given_settings and k.startswith("OMS_"))}
    full_env = {**inherited, **env, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while ready not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start in 30 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
