"""The HTTP load client of ``oms bench``: ``wrk`` when it is installed, else a Python (httpx, asyncio) client.

A Python client is bound by its own CPU long before a fast server is (it uses most of a core at a few hundred
requests per second here), so a server measured with it looks slower than it is. ``wrk`` (C, ``apt-get install
wrk``) is not. Placement and the bare HTTP endpoint are always measured with the same client in one run, so
their ratio is fair whichever it is; the report names the client.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from oms.cli.common import percentile


@dataclass
class LoadResult:
    """One load level: ``clients`` connections sending requests back to back for ``seconds``."""

    clients: int
    client: str  # "wrk" or "python"
    requests: int = 0
    ok: int = 0  # answered with the expected status
    errors: int = 0  # other statuses, socket errors, timeouts
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    first_error: str | None = None
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def lua_script(body: str, headers: dict[str, str]) -> str:
    """A wrk script that POSTs ``body`` with ``headers`` on every request."""

    def quoted(text: str) -> str:
        return "[==[" + text + "]==]"

    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    # `headers[ [==[…]==] ]`: without the spaces `[[` would open a Lua long string.
    lines += [f"wrk.headers[ {quoted(k)} ] = {quoted(v)}" for k, v in headers.items()]
    lines.append(f"wrk.body = {quoted(body)}")
    return "\n".join(lines) + "\n"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str, clients: int) -> LoadResult:
    """The figures of ``wrk --latency`` output: requests, non-2xx answers, socket errors, duration, p50, p99."""
    result = LoadResult(clients, "wrk")
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if not m:
        raise ValueError(f"no request count in wrk output:\n{output}")
    result.requests = int(m.group(1))
    result.seconds = _ms(m.group(2) + m.group(3)) / 1000
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    bad = int(non_2xx.group(1)) if non_2xx else 0
    failed = sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    result.ok = max(0, result.requests - bad)
    result.errors = bad + failed
    if bad:
        result.first_error = f"{bad} answers were not 2xx"
    elif failed:
        result.first_error = socket_errors.group(0) if socket_errors else None
    for pct, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        found = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.MULTILINE)
        if found:
            setattr(result, attr, _ms(found.group(1)))
    return result


def run_wrk(url: str, clients: int, seconds: float, body: str, headers: dict[str, str]) -> LoadResult:
    """``wrk -t1 -c<clients> -d<seconds>s --latency`` POSTing ``body``: one thread keeps wrk to one core."""
    wrk = wrk_path()
    assert wrk, "wrk is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(lua_script(body, headers))
        out = subprocess.run(
            [wrk, "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "--latency",
             "-s", str(script), url],
            capture_output=True, text=True, timeout=seconds + 60, check=False,
        )
    if out.returncode != 0 or str(script) in out.stderr:  # wrk runs on after a script error: a plain GET
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    return parse_wrk(out.stdout, clients)


async def _python_level(
    url: str, clients: int, seconds: float, body: str, headers: dict[str, str], expect: int
) -> LoadResult:
    import httpx

    result = LoadResult(clients, "python")
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    all_headers = {"Content-Type": "application/json", "User-Agent": "oms-bench", **headers}
    content = body.encode()
    async with httpx.AsyncClient(headers=all_headers, limits=limits, timeout=30) as client:
        await asyncio.gather(*(client.post(url, content=content) for _ in range(clients)))  # warm-up
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                result.requests += 1
                try:
                    response = await client.post(url, content=content)
                except httpx.HTTPError as exc:
                    result.errors += 1
                    result.first_error = result.first_error or repr(exc)
                    continue
                result.latencies.append(time.perf_counter() - t0)
                if response.status_code == expect:
                    result.ok += 1
                else:
                    result.errors += 1
                    result.first_error = result.first_error or f"{response.status_code} {response.text[:200]}"

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        result.seconds = time.perf_counter() - start
    result.latencies.sort()
    result.p50_ms = percentile(result.latencies, 50) * 1000
    result.p99_ms = percentile(result.latencies, 99) * 1000
    return result


def run_python(
    url: str, clients: int, seconds: float, body: str, headers: dict[str, str], expect: int = 201
) -> LoadResult:
    return asyncio.run(_python_level(url, clients, seconds, body, headers, expect))


def run_level(
    url: str, clients: int, seconds: float, body: str, headers: dict[str, str], *, use_wrk: bool
) -> LoadResult:
    """One level with the chosen client (wrk counts any 2xx as success; the Python client expects 201)."""
    if use_wrk:
        return run_wrk(url, clients, seconds, body, headers)
    return run_python(url, clients, seconds, body, headers)
