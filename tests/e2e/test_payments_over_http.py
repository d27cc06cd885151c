"""Payments over HTTP: card links paid at the sandbox provider (webhooks back through the gateway), manual
receipts, refunds with preview, cancel after payment. Real orders + payments + gateway + sandbox processes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.payments.contracts.sandbox import CARD_DECLINE, CARD_SUCCESS
from services.payments.provider import sign_webhook
from services.payments.settings import DEV_WEBHOOK_SECRET
from tests.e2e.conftest import Payments, System, until

pytestmark = pytest.mark.e2e

ORDER = {
    "channel": "web",
    "customer": {"name": "Lena Pay", "phone": "+49 30 5550000", "email": "lena@example.com"},
    "items": [
        {"sku": "TEE-RED-M", "name": "Red tee, M", "quantity": 2, "unit_price": "12.50"},
        {"sku": "CAP-BLK", "name": "Black cap", "quantity": 1, "unit_price": "9.99"},
    ],
    "currency": "EUR",
    "shipping": "4.90",
}
TOTAL = Decimal("39.89")
ADDRESS = {"address": {"line1": "1 Pay Street", "city": "Berlin", "postal_code": "10115", "country": "DE"}}


@pytest.fixture()
def tap(system: System) -> Iterator[Any]:
    """A plain consumer of every payment and refund event."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(system.servers.amqp_url))
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    for key in ("payment.#", "refund.#"):
        ch.queue_bind(queue, "oms.events", routing_key=key)

    class Tap:
        def events(self, subject: str, wait: float = 0.5) -> list[dict[str, Any]]:
            conn.sleep(wait)
            out = []
            while True:
                method, _props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    return [e for e in out if e["subject"] == subject]
                out.append(json.loads(body))

    yield Tap()
    conn.close()


def place(api: httpx.Client, method: str, *, note_skipped: bool = True) -> dict[str, Any]:
    order = api.post("/orders", json=ORDER)
    assert order.status_code == 201, order.text
    ref = order.json()["id"]
    api.put(f"/orders/{ref}/address", json=ADDRESS).raise_for_status()
    api.put(f"/orders/{ref}/payment-method", json={"method": method}).raise_for_status()
    if note_skipped:
        api.put(f"/orders/{ref}/customer-note", json={"skip": True}).raise_for_status()
    return dict(api.get(f"/orders/{ref}").json())


def summary_when(api: httpx.Client, ref: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        r = api.get(f"/orders/{ref}/payments")
        return r.json() if r.status_code == 200 and check(r.json()) else None

    return dict(until(probe, what))


def pay_link(p: Payments, link_id: str, card: str) -> httpx.Response:
    return httpx.post(f"{p.sandbox}/v1/payment_links/{link_id}/pay", json={"card_number": card},
                      headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=10)


def paid_card_order(p: Payments, api: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    order = place(api, "card")
    assert order["stage"] == "placed"  # card, unpaid: not confirmed yet
    ref = order["id"]
    summary_when(api, ref, lambda s: s["payment_method"] == "card", "payments to know the order")
    link = api.post(f"/orders/{order['number']}/payments/link")
    assert link.status_code == 200, link.text
    assert Decimal(link.json()["amount"]) == TOTAL and link.json()["url"].startswith(p.sandbox)
    paid = pay_link(p, link.json()["link_id"], CARD_SUCCESS)
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
    return order, paid.json()


def test_card_link_paid_confirms_the_order_and_the_list_sorts_by_paid_at(payments: Payments, tap: Any) -> None:
    with payments.api() as api:
        order, payment = paid_card_order(payments, api)
        ref = order["id"]
        summary = summary_when(api, ref, lambda s: s["status"] == "paid", "payment paid")
        assert Decimal(summary["captured"]) == TOTAL and Decimal(summary["balance_due"]) == 0
        assert summary["paid_at"] is not None
        confirmed = until(lambda: (o := api.get(f"/orders/{ref}").json())["stage"] == "confirmed" and o,
                          "the order to be confirmed")
        assert confirmed["payment_status"] == "paid" and confirmed["paid_at"] is not None
        assert [h["action"] for h in confirmed["history"]][-1] == "stage_changed"
        listed = api.get("/orders", params={"sort": "paid_at", "direction": "desc", "limit": 50}).json()["items"]
        assert listed[0]["id"] == ref  # the most recently paid order first
        assert listed[0]["payment_status"] == "paid"
        paid_ats = [o["paid_at"] for o in listed if o["paid_at"]]
        assert paid_ats == sorted(paid_ats, reverse=True)
    types = [e["type"] for e in tap.events(ref)]
    assert "payment.link_created.v1" in types and "payment.received.v1" in types
    assert types.count("payment.received.v1") == 1


def test_declined_card_is_a_failed_payment_and_the_order_stays_unpaid(payments: Payments, tap: Any) -> None:
    with payments.api() as api:
        order = place(api, "card")
        ref = order["id"]
        summary_when(api, ref, lambda s: s["payment_method"] == "card", "payments to know the order")
        link = api.post(f"/orders/{ref}/payments/link").json()
        declined = pay_link(payments, link["link_id"], CARD_DECLINE)
        assert declined.status_code == 402
        summary = summary_when(api, ref, lambda s: any(e["kind"] == "failed" for e in s["ledger"]),
                               "the failed attempt in the ledger")
        assert summary["status"] == "unpaid" and Decimal(summary["captured"]) == 0
        assert [p["status"] for p in summary["payments"]] == ["failed"]
        events = tap.events(ref, wait=1.0)
        failed = [e for e in events if e["type"] == "payment.failed.v1"]
        assert len(failed) == 1 and failed[0]["data"]["decline_code"] == "card_declined"
        assert api.get(f"/orders/{ref}").json()["stage"] == "placed"
        # The customer may try again: the same link is offered for what is still due.
        again = api.post(f"/orders/{ref}/payments/link").json()
        assert again["link_id"] == link["link_id"]


def test_partial_manual_payments_add_up_to_paid(payments: Payments) -> None:
    with payments.api() as api:
        order = place(api, "bank_transfer")
        ref = order["id"]
        assert order["stage"] == "confirmed"  # a manual method is enough to go ahead
        summary_when(api, ref, lambda s: s["status"] == "unpaid", "payments to know the order")
        first = api.post(f"/orders/{ref}/payments/manual", json={"amount": "20.00", "reference": "TRX-1"})
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "partially_paid" and first.json()["balance_due"] == "19.89"
        repeat = api.post(f"/orders/{ref}/payments/manual", json={"amount": "20.00", "reference": "TRX-1"})
        assert repeat.json()["captured"] == "20.00"  # same receipt reference: recorded once
        second = api.post(f"/orders/{ref}/payments/manual", json={"amount": "25.00", "reference": "TRX-2"})
        body = second.json()
        assert body["status"] == "paid" and body["overpaid"] == "5.11" and body["captured"] == "45.00"
        bad = api.post(f"/orders/{ref}/payments/manual", json={"amount": 1.5})
        assert bad.status_code == 422
        until(lambda: api.get(f"/orders/{ref}").json()["payment_status"] == "paid", "the order list projection")


def test_refund_preview_then_refund_once_with_the_same_idempotency_key(payments: Payments, tap: Any) -> None:
    with payments.api() as api:
        order, payment = paid_card_order(payments, api)
        ref = order["id"]
        summary_when(api, ref, lambda s: s["status"] == "paid", "payment paid")
        request = {"lines": {"TEE-RED-M": 1}, "shipping": "4.90", "adjustment_fee": "1.00"}
        preview = api.post(f"/orders/{ref}/refunds/preview", json=request).json()
        assert preview["ok"] and preview["total"] == "16.40"  # 12.50 + 4.90 - 1.00
        assert preview["status_after"] == "partially_refunded"
        too_much = api.post(f"/orders/{ref}/refunds/preview", json={"lines": {"TEE-RED-M": 3}}).json()
        assert not too_much["ok"] and too_much["errors"][0]["field"] == "lines.TEE-RED-M"
        key = str(uuid.uuid4())
        with payments.api(**{"Idempotency-Key": key}) as idem:
            first = idem.post(f"/orders/{ref}/refunds", json=request)
            again = idem.post(f"/orders/{ref}/refunds", json=request)
        assert first.status_code == 200, first.text
        assert again.status_code == 200 and again.json()["total"] == first.json()["total"] == "16.40"
        summary = api.get(f"/orders/{ref}/payments").json()
        assert summary["status"] == "partially_refunded" and summary["refunded"] == "16.40"
        assert [e["kind"] for e in summary["ledger"]].count("refunded") == 1
        at_provider = httpx.get(f"{payments.sandbox}/v1/payments/{payment['id']}").json()
        assert at_provider["amount_refunded"] == "16.40"  # the provider paid out once
        rejected = api.post(f"/orders/{ref}/refunds", json={"adjustment_refund": "100.00"})
        assert rejected.status_code == 422
        history = until(lambda: [h for h in api.get(f"/orders/{ref}").json()["history"]
                                 if h["action"] == "refund_completed"], "refund in the order history")
        assert history[0]["data"]["amount"] == "16.40"
    assert [e["type"] for e in tap.events(ref)].count("refund.completed.v1") == 1


def test_a_duplicated_webhook_has_one_effect_and_a_forged_one_none(payments: Payments) -> None:
    with payments.api() as api:
        order, payment = paid_card_order(payments, api)
        ref = order["id"]
        before = summary_when(api, ref, lambda s: s["status"] == "paid", "payment paid")
        events = httpx.get(f"{payments.sandbox}/v1/events").json()["data"]
        succeeded = next(e for e in events if e["type"] == "payment.succeeded"
                         and e["data"]["object"]["id"] == payment["id"])
        body = json.dumps({k: v for k, v in succeeded.items() if k != "webhook_id"}, separators=(",", ":")).encode()
        ts = int(time.time())
        headers = {"webhook-id": succeeded["webhook_id"], "webhook-timestamp": str(ts),
                   "webhook-signature": sign_webhook(DEV_WEBHOOK_SECRET, succeeded["webhook_id"], ts, body),
                   "content-type": "application/json"}
        url = f"{payments.system.base}/payments/webhooks/sandbox"
        replies = [httpx.post(url, content=body, headers=headers) for _ in range(2)]
        assert [r.status_code for r in replies] == [200, 200]
        assert all(r.json()["duplicate"] for r in replies)  # the sandbox already delivered it once
        fresh_id = "msg_" + uuid.uuid4().hex  # the same event under a new webhook id: the ledger dedupes it
        headers2 = {**headers, "webhook-id": fresh_id,
                    "webhook-signature": sign_webhook(DEV_WEBHOOK_SECRET, fresh_id, ts, body)}
        first, second = (httpx.post(url, content=body, headers=headers2) for _ in range(2))
        assert first.json()["duplicate"] is False and second.json()["duplicate"] is True
        forged = httpx.post(url, content=body, headers={**headers, "webhook-signature": "v1,AAAA"})
        assert forged.status_code == 400
        after = api.get(f"/orders/{ref}/payments").json()
        assert after["captured"] == before["captured"] == str(TOTAL)
        assert after["ledger"] == before["ledger"]


@pytest.mark.parametrize(("stage", "reason"), [("cancelled", "customer asked"), ("rejected", "Out of stock")])
def test_cancel_or_reject_after_payment_refunds_through_the_provider_and_the_history_shows_it(
    payments: Payments, stage: str, reason: str
) -> None:
    with payments.api() as api:
        order, payment = paid_card_order(payments, api)
        ref = order["id"]
        until(lambda: api.get(f"/orders/{ref}").json()["stage"] == "confirmed", "the order to be confirmed")
        closed = api.post(f"/orders/{ref}/transitions", json={"to": stage, "reason": reason})
        assert closed.status_code == 200 and closed.json()["stage"] == stage, closed.text
        summary = summary_when(api, ref, lambda s: s["status"] == "refunded", "the automatic refund")
        assert summary["refunded"] == str(TOTAL)
        at_provider = httpx.get(f"{payments.sandbox}/v1/payments/{payment['id']}").json()
        assert at_provider["amount_refunded"] == str(TOTAL)
        history = until(lambda: [h for h in api.get(f"/orders/{ref}").json()["history"]
                                 if h["action"] == "refund_completed"], "refund in the order history")
        assert history[0]["data"]["amount"] == str(TOTAL) and history[0]["data"]["manual"] is False
        assert api.get(f"/orders/{ref}").json()["payment_status"] == "refunded"


def test_cancel_of_a_manually_paid_order_records_a_refund_for_staff(payments: Payments) -> None:
    with payments.api() as api:
        order = place(api, "cash_on_delivery")
        ref = order["id"]
        summary_when(api, ref, lambda s: s["status"] == "unpaid", "payments to know the order")
        api.post(f"/orders/{ref}/payments/manual", json={"amount": "39.89"}).raise_for_status()
        api.post(f"/orders/{ref}/transitions", json={"to": "cancelled"}).raise_for_status()
        summary = summary_when(api, ref, lambda s: s["status"] == "refunded", "the manual refund")
        manual = [e for e in summary["ledger"] if e["kind"] == "manual_refund"]
        assert len(manual) == 1 and manual[0]["manual_action_required"] is True
        history = until(lambda: [h for h in api.get(f"/orders/{ref}").json()["history"]
                                 if h["action"] == "refund_completed"], "refund in the order history")
        assert history[0]["data"]["manual"] is True
        # Staff find it on their worklist, hand the cash back, and mark it paid out.
        todo = [r for r in api.get("/payments/manual-refunds").json()["items"] if r["order_id"] == ref]
        assert len(todo) == 1 and todo[0]["amount"] == "39.89" and todo[0]["methods"] == "cash_on_delivery"
        done = api.post(f"/orders/{ref}/refunds/paid-out",
                        json={"reference": todo[0]["reference"], "note": "cash handed back at the counter"})
        assert done.status_code == 200, done.text
        assert not any(e["manual_action_required"] for e in done.json()["ledger"])
        assert all(r["order_id"] != ref for r in api.get("/payments/manual-refunds").json()["items"])
        wrong = api.post(f"/orders/{ref}/refunds/paid-out", json={"reference": "no-such-refund"})
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "reference"
        until(lambda: [h for h in api.get(f"/orders/{ref}").json()["history"] if h["action"] == "refund_paid_out"],
              "the pay-out in the order history")


def test_authorize_now_capture_later_over_http(payments: Payments, tap: Any) -> None:
    with payments.api() as api:
        order = place(api, "card")
        ref = order["id"]
        summary_when(api, ref, lambda s: s["payment_method"] == "card", "payments to know the order")
        link = api.post(f"/orders/{ref}/payments/link", json={"capture_method": "manual"})
        assert link.status_code == 200 and link.json()["capture_method"] == "manual", link.text
        paid = pay_link(payments, link.json()["link_id"], CARD_SUCCESS)
        assert paid.json()["status"] == "requires_capture"
        held = summary_when(api, ref, lambda s: s["status"] == "in_progress" and s["pending"] == str(TOTAL),
                            "the authorization")
        assert held["captured"] == "0.00"
        confirmed = until(lambda: (o := api.get(f"/orders/{ref}").json())["stage"] == "confirmed" and o,
                          "the order confirmed on the authorization")
        assert confirmed["payment_authorized"] is True and confirmed["paid_at"] is None
        bad = api.post(f"/orders/{ref}/payments/capture", json={"amount": "1000.00"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "amount"
        captured = api.post(f"/orders/{ref}/payments/capture")
        assert captured.status_code == 200, captured.text
        assert captured.json()["status"] == "paid" and captured.json()["captured"] == str(TOTAL)
        at_provider = httpx.get(f"{payments.sandbox}/v1/payments/{paid.json()['id']}").json()
        assert at_provider["status"] == "succeeded" and at_provider["amount_captured"] == str(TOTAL)
        until(lambda: api.get(f"/orders/{ref}").json()["payment_status"] == "paid", "the order list projection")
    assert [e["type"] for e in tap.events(ref, wait=1.0)].count("payment.received.v1") == 1


def _dead_letters(subject: str) -> list[dict[str, Any]]:
    from typer.testing import CliRunner

    from oms.cli import app

    result = CliRunner().invoke(app, ["dlq", "list", "--json", "--limit", "10000"])
    assert result.exit_code == 0, result.output
    return [row for row in json.loads(result.stdout) if row["subject"] == subject]


def test_a_provider_outage_during_the_cancel_refund_is_retried_dead_lettered_and_replayed(
    payments: Payments,
) -> None:
    from typer.testing import CliRunner

    from oms.cli import app

    with payments.api() as api:
        order, payment = paid_card_order(payments, api)
        ref = order["id"]
        until(lambda: api.get(f"/orders/{ref}").json()["stage"] == "confirmed", "the order to be confirmed")
        httpx.post(f"{payments.sandbox}/v1/sandbox/outage", json={"seconds": 120}).raise_for_status()
        try:
            api.post(f"/orders/{ref}/transitions", json={"to": "cancelled"}).raise_for_status()
            # OMS_RETRY_DELAYS=1,1,1 here: three retries, then the dead-letter queue, with the reason.
            dead = until(lambda: _dead_letters(ref), "the cancellation in the dead-letter queue", timeout=30)
        finally:
            httpx.post(f"{payments.sandbox}/v1/sandbox/outage", json={"seconds": 0}).raise_for_status()
        assert len(dead) == 1 and dead[0]["type"] == "order.stage_changed.v1"
        assert dead[0]["queue"] == "oms.payments.orders" and dead[0]["attempts"] == 4
        assert "ProviderUnavailable" in dead[0]["error"] and "503" in dead[0]["error"]
        summary = api.get(f"/orders/{ref}/payments").json()
        assert summary["status"] == "paid" and summary["refunded"] == "0.00"  # nothing half-done
        assert httpx.get(f"{payments.sandbox}/v1/payments/{payment['id']}").json()["amount_refunded"] == "0"

        replay = CliRunner().invoke(app, ["dlq", "replay", "--id", dead[0]["message_id"]])
        assert replay.exit_code == 0, replay.output
        summary = summary_when(api, ref, lambda s: s["status"] == "refunded", "the refund after the replay")
        assert summary["refunded"] == str(TOTAL)
        at_provider = httpx.get(f"{payments.sandbox}/v1/payments/{payment['id']}").json()
        assert at_provider["amount_refunded"] == str(TOTAL)
        until(lambda: [h for h in api.get(f"/orders/{ref}").json()["history"] if h["action"] == "refund_completed"],
              "the refund in the order history")
        assert _dead_letters(ref) == []
