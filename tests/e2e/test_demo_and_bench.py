"""``oms demo`` pays for its orders the real way, and ``oms bench pay`` measures placed → paid → confirmed:
against real orders, payments, gateway and sandbox provider processes (the ``payments`` fixture)."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from oms.cli import app
from oms.cli import bench as bench_cli
from oms.cli import demo as demo_cli
from oms.cli.demo import (
    CARD_GAVE_UP,
    CARD_PAID,
    CARD_PAID_3DS,
    CARD_RETRIED,
    COD_COLLECTED,
    POS_COLLECTED,
    TRANSFER_ONE,
    TRANSFER_SPLIT,
    run_demo,
)
from tests.e2e.conftest import Payments, until

pytestmark = pytest.mark.e2e

# With 40 orders this seed plays every payment story (card paid, 3-D Secure, declined then paid, declined and
# given up, cash and POS collected, transfers in one and two parts) and a paid order that is then cancelled or
# rejected. Each order draws from its own generator, so the choices do not depend on timing.
SEED = 13
CARD_STORIES = (CARD_PAID, CARD_PAID_3DS, CARD_RETRIED)
CONFIRMED_OR_LATER = {"confirmed", "on_hold", "approved", "processed", "shipped", "delivered", "cancelled", "rejected"}


def _root(p: Payments) -> str:
    return p.system.base.removesuffix("/api/v1")


def test_the_demo_pays_by_card_at_the_sandbox_and_records_cash_and_transfers(payments: Payments) -> None:
    stats = asyncio.run(run_demo(_root(payments), payments.system.key, 40, 0.0, 8, SEED, sandbox=payments.sandbox))
    assert not stats.errors, stats.errors
    assert stats.placed == 40 and sum(stats.final_stage.values()) == 40
    for story in (*CARD_STORIES, CARD_GAVE_UP, COD_COLLECTED):
        assert stats.payments[story] > 0, (story, stats.payments)
    assert stats.payments[TRANSFER_ONE] + stats.payments[TRANSFER_SPLIT] > 0
    # What the demo did is what the system shows (the read-back waited for the events to arrive).
    for rec in stats.orders:
        if rec.expect_status is not None:
            assert rec.payment_status == rec.expect_status, rec
        if rec.payment_status == "paid":
            assert rec.stage in CONFIRMED_OR_LATER, rec
    assert any(r.expect_status == "refunded" for r in stats.orders)

    with payments.api() as api, httpx.Client(base_url=payments.sandbox, timeout=10) as provider:
        for rec in [r for r in stats.orders if r.story in CARD_STORIES]:
            summary = api.get(f"/orders/{rec.id}/payments").json()
            captured = [e for e in summary["ledger"] if e["kind"] == "captured"]
            assert len(captured) == 1, summary["ledger"]
            assert Decimal(captured[0]["amount"]) == Decimal(summary["total"])
            at_provider = provider.get(f"/v1/payments/{captured[0]['payment_id']}").json()
            assert at_provider["status"] == "succeeded" and captured[0]["payment_id"] in rec.payment_ids
            order = api.get(f"/orders/{rec.id}").json()
            assert order["stage"] != "placed" and order["payment_method"] == "card"
        for rec in [r for r in stats.orders if r.story in (CARD_RETRIED, CARD_GAVE_UP)]:
            ledger = until(lambda rec=rec: [e for e in api.get(f"/orders/{rec.id}/payments").json()["ledger"]
                                            if e["kind"] == "failed"], "the declined attempt in the ledger")
            assert len(ledger) == 1
        for rec in [r for r in stats.orders if r.story == CARD_GAVE_UP]:
            order = api.get(f"/orders/{rec.id}").json()
            assert order["stage"] == "placed" and order["payment_status"] == "unpaid"
        for rec in [r for r in stats.orders if r.story in (COD_COLLECTED, POS_COLLECTED)]:
            summary = api.get(f"/orders/{rec.id}/payments").json()
            manual = [e for e in summary["ledger"] if e["kind"] == "manual_received"]
            assert [e["reference"][:4] for e in manual] in (["COD-"], ["POS-"])
            assert summary["status"] == "paid" and Decimal(summary["balance_due"]) == 0
            assert rec.stage == "delivered"
        for rec in [r for r in stats.orders if r.story == TRANSFER_SPLIT]:
            summary = api.get(f"/orders/{rec.id}/payments").json()
            parts = [Decimal(e["amount"]) for e in summary["ledger"] if e["kind"] == "manual_received"]
            assert len(parts) == 2 and sum(parts) == Decimal(summary["total"])
        refunded = [r for r in stats.orders if r.expect_status == "refunded"]
        for rec in refunded:
            summary = api.get(f"/orders/{rec.id}/payments").json()
            assert summary["status"] == "refunded" and Decimal(summary["net_paid"]) == 0

    with demo_cli.console.capture() as capture:
        demo_cli._print_summary(stats, 10.0)
    out = capture.get()
    assert "Payment status by method" in out and "card: declined" in out


def test_the_demo_command_takes_the_sandbox_url(payments: Payments) -> None:
    args = ["demo", "-n", "4", "--seed", "2", "--url", _root(payments), "--api-key", payments.system.key,
            "--sandbox-url", payments.sandbox]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "4 orders placed" in result.output and "Payment status by method" in result.output
    assert "Failed steps" not in result.output
    bad = CliRunner().invoke(app, [*args[:-1], "http://127.0.0.1:9"])
    assert bad.exit_code == 1 and "payment provider" in bad.output


def test_bench_pay_confirms_every_order(payments: Payments, monkeypatch: Any) -> None:
    monkeypatch.setattr(bench_cli, "console", Console(width=200, highlight=False))
    args = ["bench", "pay", "--clients", "1,4", "--orders", "10", "--url", _root(payments),
            "--api-key", payments.system.key, "--sandbox-url", payments.sandbox, "--max-seconds", "30"]
    result = CliRunner().invoke(app, args)
    out = result.output
    assert result.exit_code == 0, out
    assert "machine" in out and "nproc" in out
    rows = {int(m.group(1)): m.groups() for m in re.finditer(
        r"│\s*(\d+)\s*│\s*(\d+)/(\d+)\s*│\s*(\d+)\s*│\s*([\d.]+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│"
        r"\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│", out)}
    assert set(rows) == {1, 4}, out
    for clients, (_c, confirmed, started, errors, rate, p50, p99, *steps) in rows.items():
        assert confirmed == started == "10" and errors == "0", (clients, out)
        assert float(rate) > 0 and 0 < int(p50) <= int(p99)
        assert all(int(s) >= 0 for s in steps)
    with payments.api() as api:  # benchmark orders are marked as tests
        listed = api.get("/orders", params={"test": "true", "limit": 50}).json()["items"]
        assert sum(1 for o in listed if o["payment_method"] == "card" and o["stage"] == "confirmed") >= 20


def test_bench_place_still_sees_its_placed_events(payments: Payments, monkeypatch: Any) -> None:
    monkeypatch.setattr(bench_cli, "console", Console(width=200, highlight=False))
    args = ["bench", "place", "--clients", "2", "--orders", "6", "--url", _root(payments),
            "--api-key", payments.system.key]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"│\s*2\s*│\s*6\s*│\s*0\s*│.*│\s*6/6\s*│", result.output), result.output
