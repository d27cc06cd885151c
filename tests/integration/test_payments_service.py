"""The payments use cases in-process against a real Postgres and the sandbox provider over HTTP.

Events travel between the two services by hand here (outbox rows -> the other service's inbox), which is
exactly what the relay and the subscribers do, so each step can be checked where it happens.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from services.orders import domain as order_domain
from services.orders import usecases as orders
from services.orders.contracts.schemas import SetCustomerNote, SetPaymentMethod
from services.payments import usecases as payments
from services.payments.contracts.sandbox import CARD_SUCCESS
from services.payments.provider import HttpSandboxProvider, sign_webhook
from services.payments.provider.sandbox import SandboxState
from services.payments.settings import DEV_WEBHOOK_SECRET
from shared.envelope import Envelope
from tests.conftest import Servers
from tests.integration.test_sandbox_provider import SandboxServer

pytestmark = pytest.mark.integration

ACTOR = {"type": "staff", "id": "tester", "name": "Tester"}
ORDER = {
    "channel": "web",
    "customer": {"name": "Ida Ledger", "email": "ida@example.com"},
    "items": [
        {"sku": "MUG", "name": "Mug", "quantity": 3, "unit_price": "10.00"},
        {"sku": "CAP", "name": "Cap", "quantity": 1, "unit_price": "9.99"},
    ],
    "currency": "EUR",
    "shipping": "5.00",
    "shipping_address": {"line1": "1 Ledger Way", "city": "Berlin", "postal_code": "10115", "country": "DE"},
}
TOTAL = Decimal("44.99")


@pytest.fixture(scope="module")
def payments_db(migrated: dict[str, str], servers: Servers) -> Iterator[Any]:
    from shared.db import Database

    db = Database(servers.database_url, "payments", size=4)
    db.open()
    yield db
    db.close()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[SandboxState, HttpSandboxProvider]]:
    server = SandboxServer(webhook_url=None, webhook_secret=DEV_WEBHOOK_SECRET)
    provider = HttpSandboxProvider(server.url, DEV_WEBHOOK_SECRET, timeout=5.0)
    yield server.app.state.sandbox, provider
    provider.close()
    server.close()


def outbox_events(db: Any, subject: str) -> list[Envelope]:
    with db.transaction() as tx:
        rows = tx.execute("SELECT payload FROM outbox WHERE subject = %s ORDER BY sequence", (subject,)).fetchall()
    return [Envelope.model_validate_json(r["payload"]) for r in rows]


def sync(orders_db: Any, payments_db: Any, provider: HttpSandboxProvider, order_id: str) -> None:
    """Deliver every event of the order both ways until nothing new happens (the inboxes dedupe)."""
    for _ in range(5):
        before = len(outbox_events(orders_db, order_id)) + len(outbox_events(payments_db, order_id))
        for env in outbox_events(orders_db, order_id):
            payments.handle_order_event(payments_db, provider, env)
        for env in outbox_events(payments_db, order_id):
            orders.handle_payment_event(orders_db, env)
        if len(outbox_events(orders_db, order_id)) + len(outbox_events(payments_db, order_id)) == before:
            return


def webhook(provider: HttpSandboxProvider, payments_db: Any, event: dict[str, Any],
            webhook_id: str | None = None) -> dict[str, Any]:
    wid = webhook_id or event["webhook_id"]
    body = json.dumps({k: v for k, v in event.items() if k != "webhook_id"}, separators=(",", ":"))
    ts = int(time.time())
    headers = {"webhook-id": wid, "webhook-timestamp": str(ts),
               "webhook-signature": sign_webhook(DEV_WEBHOOK_SECRET, wid, ts, body.encode())}
    return payments.handle_webhook(payments_db, provider, body, headers)


def place_card_order(orders_db: Any, payments_db: Any, provider: HttpSandboxProvider) -> str:
    placed = orders.place_order(orders_db, {**ORDER, "payment_method": "card"}, ACTOR)
    ref = str(placed["id"])
    orders.change(orders_db, ref, ACTOR, lambda o, a, now: order_domain.set_customer_note(
        o, SetCustomerNote(skip=True), a, now), "set_customer_note")
    sync(orders_db, payments_db, provider, ref)
    return ref


def pay(state: SandboxState, provider: HttpSandboxProvider, payments_db: Any, ref: str) -> tuple[str, list[Any]]:
    link = payments.create_payment_link(payments_db, provider, ref, ACTOR)
    result = provider.authorize(link["link_id"], CARD_SUCCESS, idempotency_key=str(uuid.uuid4()))
    events = [e for e in state.events if e["data"]["object"].get("id") == result.id]
    answers = [webhook(provider, payments_db, e) for e in events for _ in range(2)]  # every webhook twice
    return result.id, answers


def test_a_paid_link_confirms_the_order_and_a_duplicated_webhook_counts_once(
    orders_db: Any, payments_db: Any, sandbox: tuple[SandboxState, HttpSandboxProvider]
) -> None:
    state, provider = sandbox
    ref = place_card_order(orders_db, payments_db, provider)
    assert payments.summary(payments_db, ref)["status"] == "unpaid"
    assert orders.get_order(orders_db, ref)["payment_status"] == "unpaid"
    _pid, answers = pay(state, provider, payments_db, ref)
    assert [a["duplicate"] for a in answers] == [False, True]
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "paid" and Decimal(summary["captured"]) == TOTAL
    assert [e["kind"] for e in summary["ledger"]] == ["authorized", "captured"]
    sync(orders_db, payments_db, provider, ref)
    order = orders.get_order(orders_db, ref)
    assert order["stage"] == "confirmed" and order["payment_status"] == "paid" and order["paid_at"]
    types = [e.type for e in outbox_events(payments_db, ref)]
    assert types.count("payment.received.v1") == 1


def test_refund_is_exact_never_exceeds_what_was_paid_and_is_idempotent(
    orders_db: Any, payments_db: Any, sandbox: tuple[SandboxState, HttpSandboxProvider]
) -> None:
    state, provider = sandbox
    ref = place_card_order(orders_db, payments_db, provider)
    pid, _ = pay(state, provider, payments_db, ref)
    command = {"lines": {"MUG": 1, "CAP": 1}, "adjustment_refund": "0.01"}
    preview = payments.refund_preview(payments_db, ref, command)
    assert preview["ok"] and preview["total"] == "20.00"  # 10.00 + 9.99 + 0.01
    first = payments.refund(payments_db, provider, ref, command, ACTOR, idempotency_key="k-1")
    again = payments.refund(payments_db, provider, ref, command, ACTOR, idempotency_key="k-1")
    assert first["total"] == again["total"] == "20.00" and again["already_applied"] is True
    assert provider.get_payment(pid).amount_refunded == Decimal("20.00")
    with pytest.raises(Exception) as too_much:
        payments.refund(payments_db, provider, ref, {"adjustment_refund": "25.00"}, ACTOR, idempotency_key="k-2")
    assert "exceeds what can still be refunded" in str(too_much.value)
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "partially_refunded" and summary["refunded"] == "20.00"
    sync(orders_db, payments_db, provider, ref)
    history = orders.get_order(orders_db, ref)["history"]
    assert [h["action"] for h in history].count("refund_completed") == 1


def test_a_ledger_violation_puts_the_order_on_hold_and_raises_an_alert(
    orders_db: Any, payments_db: Any, sandbox: tuple[SandboxState, HttpSandboxProvider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    state, provider = sandbox
    ref = place_card_order(orders_db, payments_db, provider)
    pid, _ = pay(state, provider, payments_db, ref)
    sync(orders_db, payments_db, provider, ref)
    succeeded = next(e for e in state.events if e["type"] == "payment.succeeded" and e["data"]["object"]["id"] == pid)
    forged = json.loads(json.dumps(succeeded))
    forged["data"]["object"]["amount_captured"] = "99.00"  # the provider now claims another amount
    forged["data"]["object"]["amount_authorized"] = "99.00"
    from prometheus_client import REGISTRY

    def alerts() -> float:
        labels = {"code": "conflicting_duplicate"}
        return REGISTRY.get_sample_value("oms_payments_ledger_violations_total", labels) or 0.0

    before = alerts()
    with caplog.at_level("ERROR"):
        webhook(provider, payments_db, forged, webhook_id="msg_" + uuid.uuid4().hex)
    assert any("ledger inconsistent" in r.getMessage() for r in caplog.records)
    assert alerts() - before == 2  # the counter an alert rule watches: authorized and captured both differ
    violations = [e for e in outbox_events(payments_db, ref) if e.type == "payment.ledger_violation.v1"]
    assert len(violations) == 1 and violations[0].data["violations"][0]["code"] == "conflicting_duplicate"
    assert payments.summary(payments_db, ref)["captured"] == str(TOTAL)  # the first fact stands
    sync(orders_db, payments_db, provider, ref)
    order = orders.get_order(orders_db, ref)
    assert order["stage"] == "on_hold" and order["held_from"] == "confirmed"
    assert "ledger" in order["history"][-1]["reason"]


def test_legacy_paid_flag_and_cancel_record_a_manual_refund_for_staff(
    orders_db: Any, payments_db: Any, sandbox: tuple[SandboxState, HttpSandboxProvider]
) -> None:
    _state, provider = sandbox
    placed = orders.place_order(orders_db, {**ORDER, "payment_method": "cash_on_delivery"}, ACTOR)
    ref = str(placed["id"])
    orders.change(orders_db, ref, ACTOR, lambda o, a, now: order_domain.set_payment_method(
        o, SetPaymentMethod(method="cash_on_delivery", paid=True), a, now), "set_payment_method")
    sync(orders_db, payments_db, provider, ref)
    assert payments.summary(payments_db, ref)["status"] == "paid"
    orders.change(orders_db, ref, ACTOR, lambda o, a, now: order_domain.transition(
        o, "cancelled", a, "out of stock", now).as_outcome(), "transition")
    sync(orders_db, payments_db, provider, ref)
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "refunded"
    assert [e["kind"] for e in summary["ledger"]] == ["manual_received", "manual_refund"]
    refund_events = [e for e in outbox_events(payments_db, ref) if e.type == "refund.completed.v1"]
    assert len(refund_events) == 1 and refund_events[0].data["manual"] is True
    # Redelivering the cancellation changes nothing (inbox + ledger keys).
    for env in outbox_events(orders_db, ref):
        payments.handle_order_event(payments_db, provider, env)
    assert len(payments.summary(payments_db, ref)["ledger"]) == 2
    with psycopg.connect(payments_db.url) as conn:
        n = conn.execute("SELECT count(*) FROM payments.ledger_entries WHERE order_id = %s", (ref,)).fetchone()
    assert n is not None and n[0] == 2


def test_staff_see_manual_refunds_to_pay_out_and_mark_them_paid_out_once(
    orders_db: Any, payments_db: Any, sandbox: tuple[SandboxState, HttpSandboxProvider]
) -> None:
    from shared.errors import InvalidRequest

    _state, provider = sandbox
    placed = orders.place_order(orders_db, {**ORDER, "payment_method": "bank_transfer"}, ACTOR)
    ref = str(placed["id"])
    sync(orders_db, payments_db, provider, ref)
    payments.record_manual_payment(payments_db, ref, {"amount": "44.99", "reference": "TRX-77"}, ACTOR)
    refund = payments.refund(payments_db, provider, ref, {"lines": {"MUG": 1}, "reason": "broken mug"}, ACTOR,
                             idempotency_key="mug-1")
    assert refund["manual"] is True

    def pending() -> list[dict[str, Any]]:
        return [r for r in payments.manual_refunds(payments_db)["items"] if r["order_id"] == ref]

    [todo] = pending()
    assert todo["amount"] == "10.00" and todo["methods"] == "bank_transfer" and todo["paid_out_at"] is None
    summary = payments.summary(payments_db, ref)
    assert [e["manual_action_required"] for e in summary["ledger"] if e["kind"] == "manual_refund"] == [True]

    with pytest.raises(InvalidRequest) as wrong:
        payments.mark_refund_paid_out(payments_db, ref, {"reference": "nope"}, ACTOR)
    assert wrong.value.extra["errors"][0]["field"] == "reference"
    for _ in range(2):  # a repeated click pays out once
        summary = payments.mark_refund_paid_out(payments_db, ref, {"reference": todo["reference"],
                                                                   "note": "sent back by transfer"}, ACTOR)
    assert [e["manual_action_required"] for e in summary["ledger"] if e["kind"] == "manual_refund"] == [False]
    assert pending() == []
    done = [r for r in payments.manual_refunds(payments_db, pending=False)["items"] if r["order_id"] == ref]
    assert done[0]["paid_out_at"] and done[0]["paid_out_by"]["id"] == "tester"
    assert [e.type for e in outbox_events(payments_db, ref)].count("refund.paid_out.v1") == 1
    sync(orders_db, payments_db, provider, ref)
    history = [h for h in orders.get_order(orders_db, ref)["history"] if h["action"] == "refund_paid_out"]
    assert len(history) == 1 and history[0]["reason"] == "sent back by transfer"
