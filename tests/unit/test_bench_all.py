"""``oms bench`` (all parts) and ``oms run -p``, without servers: wrk's output read right, histogram percentiles
from bucket deltas, the run file ``oms run`` writes for the benchmark, one metrics port per process, ratios."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from oms.cli import bench_all, bench_load, bench_probe, runfile
from oms.cli.supervisor import Supervisor

pytestmark = pytest.mark.unit

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080/api/v1/orders
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   105.20ms   40.11ms 600.00ms   80.00%
    Req/Sec   305.10     50.20   400.00     70.00%
  Latency Distribution
     50%   99.70ms
     75%  120.00ms
     90%  180.00ms
     99%  1.27s
  3050 requests in 10.02s, 2.10MB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:    304.39
Transfer/sec:    214.00KB
"""


def test_wrk_latency_output_is_read_with_its_units_and_errors() -> None:
    r = bench_load.parse_wrk(WRK_OUTPUT, 32)
    assert (r.requests, r.ok, r.errors, r.seconds) == (3050, 3045, 7, 10.02)
    assert r.p50_ms == pytest.approx(99.7) and r.p99_ms == pytest.approx(1270.0)
    assert r.rate == pytest.approx(3045 / 10.02)
    assert r.client == "wrk" and r.first_error == "5 answers were not 2xx"


def test_wrk_microseconds_and_no_errors() -> None:
    text = WRK_OUTPUT.replace("99.70ms", "870.00us").replace("  Socket errors: connect 0, read 0, write 0, timeout 2\n",
                                                               "").replace("  Non-2xx or 3xx responses: 5\n", "")
    r = bench_load.parse_wrk(text, 32)
    assert r.p50_ms == pytest.approx(0.87) and r.errors == 0 and r.ok == 3050 and r.first_error is None


def test_the_wrk_script_sends_the_body_and_headers_as_lua_long_strings() -> None:
    script = bench_load.lua_script('{"a": "x]]"}', {"Authorization": "Bearer k"})
    assert 'wrk.headers[ [==[Authorization]==] ] = [==[Bearer k]==]' in script  # `[[` would open a long string
    assert 'wrk.body = [==[{"a": "x]]"}]==]' in script and 'wrk.method = "POST"' in script


def test_percentiles_come_from_the_bucket_deltas_like_histogram_quantile() -> None:
    before = {0.005: 10.0, 0.01: 10.0, 0.025: 10.0, float("inf"): 10.0}
    after = {0.005: 10.0, 0.01: 60.0, 0.025: 108.0, float("inf"): 110.0}
    d = bench_probe.delta({("m", "x"): before}, {("m", "x"): after})[("m", "x")]
    assert d == {0.005: 0.0, 0.01: 50.0, 0.025: 98.0, float("inf"): 100.0}
    assert bench_probe.histogram_quantile(0.5, d) == pytest.approx(0.01)  # the 50th of 100 ends the 2nd bucket
    assert bench_probe.histogram_quantile(0.25, d) == pytest.approx(0.0075)  # halfway through (0.005, 0.01]
    assert bench_probe.histogram_quantile(0.99, d) == pytest.approx(0.025)  # in +Inf: the largest finite bound
    assert bench_probe.histogram_count(d) == 100
    assert bench_probe.histogram_quantile(0.5, {0.01: 0.0, float("inf"): 0.0}) is None


METRICS = """# HELP oms_outbox_publish_lag_seconds Commit-to-confirm lag of outbox events
# TYPE oms_outbox_publish_lag_seconds histogram
oms_outbox_publish_lag_seconds_bucket{le="0.005",schema="orders"} 3.0
oms_outbox_publish_lag_seconds_bucket{le="0.01",schema="orders"} 7.0
oms_outbox_publish_lag_seconds_bucket{le="+Inf",schema="orders"} 8.0
oms_outbox_publish_lag_seconds_count{schema="orders"} 8.0
oms_outbox_publish_lag_seconds_sum{schema="orders"} 0.05
# HELP oms_outbox_published_total Events published from the outbox
# TYPE oms_outbox_published_total counter
oms_outbox_published_total{schema="orders"} 8.0
# HELP oms_events_handled_total Events handled
# TYPE oms_events_handled_total counter
oms_events_handled_total{outcome="ok",queue="oms.orders.payments"} 4.0
"""


def test_metrics_of_two_processes_of_one_service_add_up() -> None:
    one = bench_probe.parse_metrics(METRICS)
    assert one[(bench_probe.OUTBOX_LAG, "orders")] == {0.005: 3.0, 0.01: 7.0, float("inf"): 8.0}
    assert one[(bench_probe.PUBLISHED, "orders")] == {0.0: 8.0}
    assert one[(f"{bench_probe.HANDLED}:ok", "oms.orders.payments")] == {0.0: 4.0}
    both: bench_probe.Samples = {}
    bench_probe._add(both, one)
    bench_probe._add(both, one)
    assert both[(bench_probe.OUTBOX_LAG, "orders")][float("inf")] == 16.0


def test_process_counts_and_one_metrics_port_per_nameko_process() -> None:
    assert runfile.parse_counts(["orders=2,payments=3", "gateway=1"]) == {"orders": 2, "payments": 3, "gateway": 1}
    for bad in (["orders"], ["orders=0"], ["orders=x"], ["=2"]):
        with pytest.raises(ValueError):
            runfile.parse_counts(bad)
    planned = runfile.plan(["gateway", "orders", "payments"], {"orders": 2}, 9100, {"orders", "payments"})
    assert [(p.name, p.service, p.metrics_port) for p in planned] == [
        ("gateway", "gateway", None), ("orders", "orders", 9100), ("orders#2", "orders", 9101),
        ("payments", "payments", 9102),
    ]
    assert all(p.metrics_port is None for p in runfile.plan(["orders"], {"orders": 2}, 0, {"orders"}))


def test_the_run_file_lists_running_processes_and_is_ignored_once_its_supervisor_is_gone(tmp_path: Path) -> None:
    planned = runfile.plan(["orders"], {"orders": 2}, 9100, {"orders"})
    runfile.write(tmp_path, planned, {"orders": 11, "orders#2": 12})
    got = runfile.read(tmp_path)
    assert [(p["name"], p["pid"], p["metrics_port"]) for p in got] == [("orders", 11, 9100), ("orders#2", 12, 9101)]
    text = runfile.run_file(tmp_path).read_text().replace(f'"supervisor_pid": {os.getpid()}', '"supervisor_pid": 0')
    runfile.run_file(tmp_path).write_text(text)  # pid 0 has no /proc entry: an `oms run` that was killed
    assert runfile.read(tmp_path) == []
    runfile.remove(tmp_path)
    assert runfile.read(tmp_path) == [] and not runfile.run_file(tmp_path).exists()


def test_each_process_gets_its_own_variables(tmp_path: Path) -> None:
    """Two processes of one service must not both listen on the same metrics port."""
    code = "import os, pathlib, sys; pathlib.Path(sys.argv[1]).write_text(os.environ.get('OMS_METRICS_PORT', '-'))"
    commands = {n: [sys.executable, "-c", code, str(tmp_path / n)] for n in ("orders", "orders#2", "gateway")}
    sup = Supervisor(commands, say=lambda _: None, envs={"orders": {"OMS_METRICS_PORT": "9100"},
                                                           "orders#2": {"OMS_METRICS_PORT": "9101"}})
    sup.start()
    deadline = time.monotonic() + 20
    while sup.pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    sup.stop_all()
    got = {n: (tmp_path / n).read_text() for n in commands}
    assert got == {"orders": "9100", "orders#2": "9101", "gateway": os.environ.get("OMS_METRICS_PORT", "-")}


def test_cpu_and_peak_memory_of_a_process_are_read_from_proc() -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("Linux /proc needed")
    before = bench_probe.cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    after = bench_probe.cpu_seconds(os.getpid())
    assert before is not None and after is not None and after >= before
    assert (bench_probe.peak_rss_mib(os.getpid()) or 0) > 1
    assert bench_probe.cpu_seconds(0) is None


def test_every_throughput_is_divided_by_its_raw_limit_and_targets_say_met_or_not() -> None:
    report = bench_all.Report(machine={}, date="d", command="oms bench", load_client="wrk",
                              processes=[{"name": "orders", "pid": 1}])
    report.raw = {
        "postgres_1": {"rate": 200.0}, "postgres_16": {"rate": 4000.0},
        "rabbitmq_publish": {"rate": 10000.0}, "rabbitmq_consume": {"rate": 8000.0},
    }
    report.bare_http = [{"clients": 1, "rate": 10000.0}, {"clients": 32, "rate": 20000.0}]
    report.placement = [{"clients": 1, "rate": 100.0, "p99_ms": 20.0}, {"clients": 32, "rate": 1200.0, "p99_ms": 90.0}]
    report.card_orders = [{"clients": 32, "rate": 50.0}]
    report.probes = {"card_orders": bench_all.PartProbe(
        orders=100, cpu_ms_per_order={"orders": 4.0, "postgres": 3.0, "bench client": 50.0},
        published_per_s={"orders": 300.0, "payments": 100.0}, handled_per_s={"oms.orders.payments": 400.0})}
    report.peak_rss_mib = {"orders": 80.0, "postgres": 900.0}
    bench_all._ratios_and_targets(report)
    ratios = {r["figure"]: r["ratio"] for r in report.ratios}
    assert ratios["placement orders/s, 32 client(s)"] == pytest.approx(0.06)
    assert ratios["placement orders/s, 1 client"] == pytest.approx(0.5)
    assert ratios["card orders/s (best: 32 clients)"] == pytest.approx(50 / 4000)
    assert ratios["events published/s during card_orders (all relays)"] == pytest.approx(0.04)
    assert ratios["events handled/s during card_orders (all consumers)"] == pytest.approx(0.05)
    met = {t["target"].split(" (")[0]: t["met"] for t in report.targets}
    assert met["placement orders/s at 32 clients"] is True and met["placement p99 ms at 32 clients"] is True
    assert met["card orders/s"] is False
    assert met["CPU ms per card order, all processes"] is True  # 4 + 3: the bench client is not the system
    assert met["peak RSS MiB per service process"] is True  # Postgres is not a service
    bench_all.print_report(report)  # every table prints with partial figures
