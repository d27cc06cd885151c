"""``oms bench`` charges each order the CPU of all the work it causes: after each level it waits until the system
is idle (queues and outboxes empty, counters still, processes quiet), and reports CPU per order in the window and
fully handled, split into services, infrastructure and sandboxes. The pure parts, without servers."""

from __future__ import annotations

import pytest

from oms.cli import bench_all, bench_probe
from oms.cli.bench_probe import DrainSample, settle

pytestmark = pytest.mark.unit

EMPTY = {"oms.fulfillment.orders": 0, "oms.notifications.orders": 0}


def sample(at: float, *, queued: dict[str, int] | None = None, outboxes: dict[str, int] | None = None,
           handled: float = 100, published: float = 200, cpu: float = 10.0) -> DrainSample:
    return DrainSample(at, EMPTY if queued is None else queued, outboxes or {"orders": 0}, handled, published, cpu)


def test_messages_queued_or_events_unpublished_are_work_left_and_shown() -> None:
    v = settle(None, sample(0, queued={"oms.fulfillment.orders": 0, "oms.notifications.orders": 1200},
                            outboxes={"notifications": 35}))
    assert not v.idle and v.quiet_from is None
    assert "1,200 messages queued (oms.notifications.orders 1,200)" in v.status and "35 events in outboxes" in v.status
    # A stretch that looked quiet ends when a message shows up again (a retry back from a delay queue).
    v = settle(sample(0), sample(3, queued={"oms.delay.5s": 1}))
    assert not v.idle and v.quiet_from is None


def test_empty_queues_are_not_idle_while_consumers_still_handle_unacked_messages() -> None:
    """A passive declare counts ready messages only: a batch being handled is unacked and invisible there, but
    the handled counter moves when it is done."""
    first = sample(0)
    v = settle(first, sample(3, handled=140))
    assert not v.idle and v.quiet_from is not None and v.quiet_from.at == 3  # the quiet stretch starts again
    v = settle(first, sample(3, published=230))  # a relay still publishing
    assert not v.idle and v.quiet_from is not None and v.quiet_from.at == 3


def test_idle_after_two_quiet_seconds_and_the_work_ends_where_the_quiet_began() -> None:
    start = settle(None, sample(10))
    assert not start.idle and start.quiet_from is not None and start.quiet_from.at == 10
    v = settle(start.quiet_from, sample(11, cpu=10.01))
    assert not v.idle and "checking quiet" in v.status  # too short to tell
    v = settle(start.quiet_from, sample(12.5, cpu=10.05))  # 2 % of a core: polling
    assert v.idle and v.quiet_from is not None and v.quiet_from.at == 10  # the 2.5 s of checking charged to nobody


def test_processes_still_busy_are_not_idle_even_with_empty_queues() -> None:
    """The notifications sender exposes no "due" figure: a message being sent shows as CPU."""
    v = settle(sample(10), sample(12.5, cpu=10.5), max_cpu_share=0.10)  # 20 % of a core
    assert not v.idle and "20% of a core" in v.status
    assert v.quiet_from is not None and v.quiet_from.at == 12.5  # measured again from now


def test_the_idle_allowance_grows_with_the_processes_watched() -> None:
    """Ten idle processes of `oms run` use 4-6 % of a core together (heartbeats, polling loops)."""
    assert bench_probe.max_cpu_share(2) == pytest.approx(0.05)
    assert bench_probe.max_cpu_share(10) == pytest.approx(0.10)
    assert bench_probe.max_cpu_share(14) == pytest.approx(0.14)


def watched() -> list[bench_probe.Watched]:
    return bench_probe.watched(
        [{"name": "orders", "service": "orders", "pid": 11}, {"name": "orders#2", "service": "orders", "pid": 12},
         {"name": "sandbox-mail", "service": "sandbox-mail", "pid": 13}],
        include_self=True,
    )


def test_processes_are_grouped_into_services_infrastructure_sandboxes() -> None:
    procs = [*watched(), bench_probe.Watched("postgres", (21,), True), bench_probe.Watched("rabbitmq", (22,), True)]
    groups = {w.name: bench_probe.group_of(w, {"sandbox-mail", "sandbox-provider"}) for w in procs}
    assert groups == {"orders": "services", "orders#2": "services", "sandbox-mail": "sandboxes",
                      "bench client": "bench client", "postgres": "infrastructure", "rabbitmq": "infrastructure"}
    sums = bench_probe.split_sums({"orders": 3.0, "orders#2": 1.0, "sandbox-mail": 20.0, "postgres": 5.0,
                                   "rabbitmq": 2.0, "bench client": 40.0}, groups)
    assert sums == {"services": 4.0, "infrastructure": 7.0, "sandboxes": 20.0, "all processes": 31.0}


def test_the_postgres_group_leaves_out_the_benchmarks_own_backend() -> None:
    import os

    w = bench_probe.Watched("postgres", (), True, exclude=(os.getpid(),))
    assert os.getpid() not in w.current_pids()


def drained_report() -> bench_all.Report:
    report = bench_all.Report(machine={}, date="d", command="oms bench", load_client="wrk",
                              processes=[{"name": "orders", "pid": 1}], drain_timeout=300.0)
    report.groups = {"orders": "services", "sandbox-mail": "sandboxes", "postgres": "infrastructure",
                     "bench client": "bench client"}
    report.probes = {
        "placement@8": bench_all.PartProbe(
            orders=100, seconds=3.0, clients=8,
            cpu_ms_per_order={"orders": 4.0, "postgres": 3.0, "sandbox-mail": 0.5, "bench client": 9.0},
            cpu_ms_per_order_handled={"orders": 6.0, "postgres": 10.0, "sandbox-mail": 20.0, "bench client": 30.0},
            drain_seconds=16.0),
        "card_orders@1": bench_all.PartProbe(
            orders=100, seconds=20.0, clients=1, cpu_ms_per_order={"orders": 5.0, "postgres": 1.0},
            cpu_ms_per_order_handled={"orders": 6.0, "postgres": 2.0}, drain_seconds=1.0),
        "card_orders@32": bench_all.PartProbe(
            orders=300, seconds=20.0, clients=32, cpu_ms_per_order={"orders": 1.0, "postgres": 1.0},
            cpu_ms_per_order_handled={"orders": 10.0, "postgres": 6.0}, drain_seconds=300.0, drain_timed_out=True,
            drain_remaining=4321),
    }
    for part in report.probes.values():
        bench_all.split(part, report.groups)
    return report


def test_each_part_reports_window_and_fully_handled_cpu_split_by_group() -> None:
    report = drained_report()
    assert report.probes["placement@8"].cpu_split == {
        "window": {"services": 4.0, "infrastructure": 3.0, "sandboxes": 0.5, "all processes": 7.5},
        "handled": {"services": 6.0, "infrastructure": 10.0, "sandboxes": 20.0, "all processes": 36.0},
    }
    rows = bench_all.cpu_sums_rows(report)
    assert rows[0] == ["placement@8", "100", "in the window", "3.0 s", "4.00", "3.00", "0.50", "7.50"]
    assert rows[1] == ["", "", "fully handled", "+ 16.0 s drain", "6.00", "10.00", "20.00", "36.00"]
    assert rows[5][2] == "fully handled (drain timed out, 4,321 left)"


def test_the_card_order_target_compares_all_processes_fully_handled_over_every_level() -> None:
    report = drained_report()
    assert bench_all.card_cpu(report) == (pytest.approx((100 * 8.0 + 300 * 16.0) / 400), True)
    bench_all._ratios_and_targets(report)
    cpu = next(t for t in report.targets if t["target"].startswith("CPU ms per card order"))
    assert "all processes" in cpu["target"] and "fully handled" in cpu["target"]
    assert cpu["measured"] == pytest.approx(14.0) and cpu["met"] is False
    bench_all.print_report(report)  # both tables print, the timed-out drain included


def test_without_draining_the_window_figures_stay_as_before() -> None:
    report = bench_all.Report(machine={}, date="d", command="oms bench --no-drain", load_client="wrk", processes=[])
    report.probes = {"card_orders": bench_all.PartProbe(orders=10, seconds=5.0,
                                                        cpu_ms_per_order={"orders": 4.0, "postgres": 3.0})}
    bench_all.split(report.probes["card_orders"], report.groups)
    assert bench_all.card_cpu(report) == (pytest.approx(7.0), False)
    rows = bench_all.cpu_sums_rows(report)
    assert len(rows) == 1 and rows[0][2] == "in the window" and rows[0][-1] == "7.00"
    assert "fully handled" not in str(bench_all.cpu_processes_table(report).columns[2].header)
