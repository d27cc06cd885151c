"""``oms demo`` and ``oms bench`` without servers: the demo plays against a small in-memory stand-in of the
HTTP API and the sandbox provider (an httpx ``MockTransport``) that keeps the rules the demo depends on:
a card order is confirmed only once paid (and only after a delay, as the real event chain does), a manual
method confirms at once, a stale ``expected_version`` is a 409, a placed order cannot be approved, payments
answer 404 until they have "seen" the order, and provider POSTs need an Idempotency-Key."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from oms.cli import demo as demo_cli
from oms.cli.bench import event_kind, percentile
from oms.cli.demo import (
    CARD_GAVE_UP,
    CARD_PAID,
    CARD_PAID_3DS,
    CARD_RETRIED,
    COD_COLLECTED,
    TRANSFER_ONE,
    TRANSFER_SPLIT,
    DemoStats,
    _route,
    run_demo,
)
from services.payments.contracts.sandbox import CARD_3DS, CARD_DECLINE, CARD_SUCCESS

pytestmark = pytest.mark.unit

API = "http://api.test"
PSP = "http://psp.test"
MANUAL = {"cash_on_delivery", "bank_transfer", "pos_on_delivery"}
FROM_PLACED = {"confirmed", "on_hold", "rejected", "cancelled", "abandoned"}


class FakeSystem:
    """Orders + payments + provider, just enough of them."""

    def __init__(self, confirm_after_reads: int = 2) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.numbers = itertools.count(1001)
        self.links: dict[str, str] = {}  # link id -> order id
        self.payments: dict[str, str] = {}  # provider payment id -> link id
        self.seen_by_payments: set[str] = set()
        self.confirm_after_reads = confirm_after_reads
        self.pending_confirm: dict[str, int] = {}  # order id -> reads left before the "event" confirms it
        self.declined = 0

    # -- helpers -----------------------------------------------------------------------------------------
    def _auto_confirm(self, o: dict[str, Any]) -> None:
        paid_enough = o["payment_method"] in MANUAL or o["payment_status"] == "paid"
        noted = o["customer_note"] is not None or o["customer_note_skipped"]
        if o["stage"] == "placed" and o["shipping_address"] and o["payment_method"] and paid_enough and noted:
            o["stage"] = "confirmed"
            o["version"] += 1

    def _summary(self, o: dict[str, Any]) -> dict[str, Any]:
        total = Decimal(o["totals"]["total"])
        due = max(total - o["received"], Decimal(0))
        return {"order_id": o["id"], "total": str(total), "balance_due": str(due), "status": o["payment_status"]}

    def _set_paid_status(self, o: dict[str, Any]) -> None:
        total = Decimal(o["totals"]["total"])
        o["payment_status"] = "paid" if o["received"] >= total else "partially_paid" if o["received"] else "unpaid"

    @staticmethod
    def _problem(status: int, title: str) -> httpx.Response:
        return httpx.Response(status, json={"title": title, "status": status, "detail": title})

    # -- the transport -----------------------------------------------------------------------------------
    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        if request.url.host == "psp.test":
            return self._provider(request, body)
        parts = request.url.path.removeprefix("/api/v1/").split("/")
        method = request.method
        if parts == ["orders"] and method == "POST":
            return self._place(body)
        o = self.orders.get(parts[1]) if len(parts) > 1 else None
        if o is None:
            return self._problem(404, "Not found")
        rest = parts[2:]
        if not rest and method == "GET":
            left = self.pending_confirm.get(o["id"])
            if left is not None:
                if left <= 0:
                    del self.pending_confirm[o["id"]]
                    self._auto_confirm(o)
                else:
                    self.pending_confirm[o["id"]] = left - 1
            return httpx.Response(200, json=self._view(o))
        if rest and rest[0] == "payments":
            if o["id"] not in self.seen_by_payments:  # the order.placed event has not reached payments yet
                self.seen_by_payments.add(o["id"])
                return self._problem(404, "Not found")
            return self._payments(o, rest[1:], method, body)
        return self._change(o, rest, body)

    def _place(self, body: dict[str, Any]) -> httpx.Response:
        total = sum(Decimal(i["unit_price"]) * i["quantity"] for i in body["items"]) + Decimal(body["shipping"])
        total -= Decimal(body.get("discount", "0"))
        oid = str(uuid.uuid4())
        o = {
            "id": oid, "number": next(self.numbers), "stage": "placed", "version": 1,
            "shipping_address": body.get("shipping_address"), "payment_method": body.get("payment_method"),
            "customer_note": body.get("customer_note"), "customer_note_skipped": False,
            "payment_status": "unpaid", "totals": {"total": str(total)}, "received": Decimal(0),
            "test": body.get("test", False),
        }
        self.orders[oid] = o
        self._auto_confirm(o)
        return httpx.Response(201, json=self._view(o))

    @staticmethod
    def _view(o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if k != "received"}

    def _change(self, o: dict[str, Any], rest: list[str], body: dict[str, Any]) -> httpx.Response:
        what = rest[0]
        if what == "transitions":
            if body.get("expected_version") not in (None, o["version"]):
                return self._problem(409, "Version conflict")
            if o["stage"] == "placed" and body["to"] not in FROM_PLACED:
                return self._problem(409, "Illegal transition")
            if body["to"] == "confirmed" and o["stage"] == "placed":
                return self._problem(409, "Illegal transition")
            o["stage"] = body["to"]
            if body["to"] in ("cancelled", "rejected") and o["received"] > 0:
                o["payment_status"] = "refunded"
        elif what == "address":
            o["shipping_address"] = body["address"]
        elif what == "payment-method":
            assert "paid" not in body, "the demo must not use the legacy paid flag"
            o["payment_method"] = body["method"]
        elif what == "customer-note":
            o["customer_note"] = body.get("note")
            o["customer_note_skipped"] = bool(body.get("skip"))
        elif what != "notes":
            return self._problem(404, "Not found")
        o["version"] += 1
        self._auto_confirm(o)
        return httpx.Response(200, json=self._view(o))

    def _payments(self, o: dict[str, Any], rest: list[str], method: str, body: Any) -> httpx.Response:
        if not rest and method == "GET":
            return httpx.Response(200, json=self._summary(o))
        if rest == ["link"]:
            if o["payment_status"] == "paid":
                return self._problem(422, "Nothing left to pay")
            link_id = next((lid for lid, oid in self.links.items() if oid == o["id"]), None)
            if link_id is None:
                link_id = f"plink_{uuid.uuid4().hex[:24]}"
                self.links[link_id] = o["id"]
            return httpx.Response(200, json={"link_id": link_id, "url": f"{PSP}/pay/{link_id}",
                                             "amount": self._summary(o)["balance_due"]})
        if rest == ["manual"]:
            assert o["payment_method"] in MANUAL and body["method"] == o["payment_method"]
            assert isinstance(body["amount"], str)
            o["received"] += Decimal(body["amount"])
            self._set_paid_status(o)
            return httpx.Response(200, json=self._summary(o))
        return self._problem(404, "Not found")

    def _provider(self, request: httpx.Request, body: Any) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404, json={"error": {"code": "resource_missing"}})
        assert request.headers.get("Idempotency-Key"), "every provider POST needs an Idempotency-Key"
        parts = request.url.path.strip("/").split("/")
        if parts[1] == "payment_links":
            link_id, card = parts[2], body["card_number"]
            pid = f"pay_{uuid.uuid4().hex[:24]}"
            self.payments[pid] = link_id
            if card == CARD_DECLINE:
                self.declined += 1
                return httpx.Response(402, json={"error": {"code": "card_declined", "payment_id": pid}})
            if card == CARD_3DS:
                return httpx.Response(200, json={"id": pid, "status": "requires_action"})
            assert card == CARD_SUCCESS
            return self._succeeded(pid)
        if parts[1] == "payments" and parts[3] == "confirm_3ds":
            assert body == {"success": True}
            return self._succeeded(parts[2])
        return httpx.Response(404, json={"error": {"code": "resource_missing"}})

    def _succeeded(self, pid: str) -> httpx.Response:
        o = self.orders[self.links[self.payments[pid]]]
        o["received"] = Decimal(o["totals"]["total"])
        o["payment_status"] = "paid"
        self.pending_confirm[o["id"]] = self.confirm_after_reads  # confirmed "asynchronously", a bit later
        return httpx.Response(200, json={"id": pid, "status": "succeeded"})


def play(fake: FakeSystem, orders: int, seed: int, concurrency: int = 8) -> DemoStats:
    return asyncio.run(run_demo(API, "key", orders, 0.0, concurrency, seed, sandbox=PSP, settle_seconds=0.5,
                                transport=httpx.MockTransport(fake)))


def test_the_demo_pays_by_card_cash_and_transfer_and_waits_for_card_confirmations() -> None:
    fake = FakeSystem()
    stats = play(fake, 150, seed=3)
    assert not stats.errors, stats.errors
    assert stats.placed == 150 == len(stats.orders)
    for story in (CARD_PAID, CARD_PAID_3DS, CARD_RETRIED, CARD_GAVE_UP, COD_COLLECTED, TRANSFER_ONE,
                  TRANSFER_SPLIT):
        assert stats.payments[story] > 0, story
    assert fake.declined == stats.payments[CARD_RETRIED] + stats.payments[CARD_GAVE_UP]
    methods = {r.method for r in stats.orders}
    assert {"card", "cash_on_delivery", "bank_transfer", "pos_on_delivery"} <= methods
    for rec in stats.orders:
        o = fake.orders[rec.id]
        assert rec.stage == o["stage"]
        assert rec.payment_status == o["payment_status"]
        if rec.expect_status:
            assert rec.payment_status == rec.expect_status, rec
        if rec.story == CARD_GAVE_UP:
            assert o["stage"] == "placed" and o["payment_status"] == "unpaid"
        if rec.story in (CARD_PAID, CARD_PAID_3DS, CARD_RETRIED):
            assert o["stage"] != "placed"
        if rec.story in (TRANSFER_ONE, TRANSFER_SPLIT, COD_COLLECTED):
            assert o["received"] == Decimal(o["totals"]["total"])
    assert any(r.expect_status == "refunded" for r in stats.orders)
    table = stats.payment_table()
    assert table["card"]["paid"] > 0 and table["cash_on_delivery"]["paid"] > 0


def test_a_seed_gives_the_same_demo_whatever_the_concurrency() -> None:
    one = play(FakeSystem(confirm_after_reads=1), 30, seed=11, concurrency=1)
    many = play(FakeSystem(confirm_after_reads=1), 30, seed=11, concurrency=8)
    assert not one.errors and not many.errors
    assert one.scenarios == many.scenarios and one.payments == many.payments
    assert one.final_stage == many.final_stage and one.channels == many.channels


def test_a_card_order_that_is_never_confirmed_is_a_counted_error_not_a_crash() -> None:
    fake = FakeSystem(confirm_after_reads=10**9)
    stats = asyncio.run(run_demo(API, "key", 30, 0.0, 8, 5, sandbox=PSP, confirm_timeout=0.3, settle_seconds=0.1,
                                 transport=httpx.MockTransport(fake)))
    assert stats.placed == 30
    assert any("not confirmed within" in what for what in stats.errors)


def test_the_summary_shows_the_payment_mix() -> None:
    stats = play(FakeSystem(), 60, seed=3)
    with demo_cli.console.capture() as capture:
        demo_cli._print_summary(stats, 1.0)
    out = capture.get()
    assert "Payment status by method" in out and "Payments (what customers and staff did)" in out
    assert "card: paid" in out and "cash on delivery: collected by the courier" in out


def test_errors_group_by_route_not_by_order() -> None:
    oid = str(uuid.uuid4())
    assert _route(f"/orders/{oid}/payments/link") == "…/payments/link"
    assert _route(f"/orders/{oid}") == "orders/{id}"
    assert _route("/orders") == "orders"


def test_event_kinds_and_percentiles() -> None:
    assert event_kind({"type": "order.placed.v1", "data": {"stage": "placed"}}) == "order.placed.v1"
    assert event_kind({"type": "order.stage_changed.v1", "data": {"to_stage": "confirmed"}}) == (
        "order.stage_changed.v1:confirmed"
    )
    assert event_kind({"type": "payment.status_changed.v1", "data": {"status": "paid"}}) == (
        "payment.status_changed.v1:paid"
    )
    assert percentile([], 50) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


def test_the_listener_files_events_by_kind_and_subject_first_receipt_wins() -> None:
    from oms.cli.bench import CONFIRMED, PLACED, EventListener, PlacedListener

    listener = EventListener("amqp://unused", ("order.placed.v1", "order.stage_changed.v1"))

    def deliver(type_: str, subject: str, **data: Any) -> None:
        body = {"type": type_, "subject": subject, "time": "2026-01-01T00:00:00Z", "data": data}
        listener._on_message(None, None, None, json.dumps(body).encode())

    deliver("order.placed.v1", "a", stage="placed")
    deliver("order.stage_changed.v1", "a", to_stage="confirmed")
    first = listener.received_for(["a"], CONFIRMED)["a"]
    deliver("order.stage_changed.v1", "a", to_stage="confirmed")  # a redelivery does not move the time
    deliver("order.stage_changed.v1", "b", to_stage="approved")
    listener._on_message(None, None, None, b"not json")
    assert listener.received_for(["a", "b"], CONFIRMED) == {"a": first}
    assert len(listener.snapshot({"a", "b"})) == 1 and listener.snapshot({"a"}, PLACED)[0][1] > 0
    assert PlacedListener("amqp://unused").routing_keys == (PLACED,)
