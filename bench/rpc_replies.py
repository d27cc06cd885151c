"""What a Nameko RPC answer costs, Nameko's way against ``shared.nameko_ext.lean_replies``, alternated:
``python bench/rpc_replies.py [--calls 3000] [--clients 32] [--rounds 2]``.

Per round and mode, a tiny Nameko service (an ``echo`` returning a small order-like dict) runs in its own
process, with the runtime's ``survive_lost_replies`` and, in mode ``lean``, ``lean_replies``; the gateway's
``AsyncRpcClient`` makes the calls, ``--clients`` in flight. Reports calls/s and, per call, the CPU of the
service process and of the whole RabbitMQ broker (``/proc/<pid>/stat``; the broker is shared: run it on a
quiet machine, compare the modes of one round). Uses a throwaway vhost (``rabbitmqctl``), deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oms.cli import bench_probe as probe  # noqa: E402

SERVICE = """
import eventlet
eventlet.monkey_patch()
import sys
from decimal import Decimal
from nameko.rpc import rpc
from nameko.runners import ServiceRunner
from shared.nameko_ext import lean_replies, survive_lost_replies

survive_lost_replies()
if sys.argv[2] == "lean":
    lean_replies()


class Echo:
    name = "rpcbench"

    @rpc
    def echo(self, value):
        return {"id": value, "number": 1001, "stage": "placed", "total": Decimal("25.00"), "currency": "EUR",
                "lines": [{"sku": "TEE-RED-M", "quantity": 2, "unit_price": Decimal("12.50")}]}


runner = ServiceRunner({"AMQP_URI": sys.argv[1], "max_workers": 64})
runner.add_service(Echo)
runner.start()
print("READY", flush=True)
runner.wait()
"""


def cpu_seconds(pid: int) -> float:
    return probe.cpu_seconds(pid) or 0.0


def broker_cpu() -> float:
    """RabbitMQ's CPU seconds so far (its Erlang VM), as ``oms bench`` counts it."""
    return probe.cpu_snapshot([probe.Watched("rabbitmq", (), True)])["rabbitmq"]


def one(url: str, mode: str, calls: int, clients: int, script: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), url, mode], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        while "READY" not in (line := proc.stdout.readline()):
            if not line and proc.poll() is not None:
                raise SystemExit("the service exited")
        # The CPU is read around the timed half only: drive() warms up with a first pass of the same calls.
        before: dict[str, float] = {}

        async def measured() -> float:
            from services.gateway.rpc import AsyncRpcClient

            warm = AsyncRpcClient(url, timeout=30.0)
            await warm.start(wait=10)
            await asyncio.gather(*(warm.call("rpcbench", "echo", str(i)) for i in range(clients * 4)))
            await warm.close()
            before.update(service=cpu_seconds(proc.pid), broker=broker_cpu())
            client = AsyncRpcClient(url, timeout=30.0)
            await client.start(wait=10)
            todo = iter(range(calls))

            async def worker() -> None:
                for i in todo:
                    await client.call("rpcbench", "echo", str(i))

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            seconds = time.perf_counter() - t0
            await client.close()
            return seconds

        seconds = asyncio.run(measured())
        return {"calls/s": calls / seconds,
                "service ms/call": (cpu_seconds(proc.pid) - before["service"]) * 1000 / calls,
                "broker ms/call": (broker_cpu() - before["broker"]) * 1000 / calls}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--amqp", default=os.environ.get("OMS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args()
    vhost = f"oms_rpcbench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    try:
        user = urlsplit(args.amqp).username or "guest"
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"], check=True)
        url = urlunsplit(urlsplit(args.amqp)._replace(path="/" + quote(vhost, safe="")))
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "rpcbench_service.py"
            script.write_text(SERVICE)
            print(f"{args.calls} calls, {args.clients} in flight; load {os.getloadavg()[0]:.1f}")
            print(f"{'round':>5} {'mode':>7} {'calls/s':>8} {'service ms/call':>16} {'broker ms/call':>15}")
            for r in range(1, args.rounds + 1):
                for mode in ("nameko", "lean"):
                    f = one(url, mode, args.calls, args.clients, script)
                    print(f"{r:>5} {mode:>7} {f['calls/s']:>8.0f} {f['service ms/call']:>16.3f} "
                          f"{f['broker ms/call']:>15.3f}", flush=True)
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)


if __name__ == "__main__":
    main()
