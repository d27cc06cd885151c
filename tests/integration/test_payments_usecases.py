"""The payments use cases against the in-memory provider (``tests.fakes``) and orders' contract events built
by ``tests.builders``: no HTTP, no orders service, a real Postgres. Each test reads as the merchant's story."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from services.payments import usecases as payments
from services.payments.contracts.errors import ProviderFailed, WebhookRejected
from services.payments.contracts.sandbox import CARD_3DS, CARD_DECLINE
from services.payments.provider import ProviderUnavailable
from shared.envelope import Envelope
from tests.builders import OrderStream, place_order
from tests.conftest import Servers
from tests.fakes import InMemoryPaymentProvider

pytestmark = pytest.mark.integration

ACTOR = {"type": "staff", "id": "tester", "name": "Tester"}


@pytest.fixture(scope="module")
def db(migrated: dict[str, str], servers: Servers) -> Iterator[Any]:
    from shared.db import Database

    database = Database(servers.database_url, "payments", size=2)
    database.open()
    yield database
    database.close()


@pytest.fixture
def provider() -> InMemoryPaymentProvider:
    return InMemoryPaymentProvider()


def published(db: Any, order_id: str) -> list[Envelope]:
    with db.transaction() as tx:
        rows = tx.execute("SELECT payload FROM outbox WHERE subject = %s ORDER BY sequence", (order_id,)).fetchall()
    return [Envelope.model_validate_json(r["payload"]) for r in rows]


def types(db: Any, order_id: str) -> list[str]:
    return [e.type for e in published(db, order_id)]


def deliver(db: Any, provider: InMemoryPaymentProvider, env: Envelope) -> None:
    payments.handle_order_event(db, provider, env)


def webhooks(db: Any, provider: InMemoryPaymentProvider, times: int = 1) -> list[dict[str, Any]]:
    return [payments.handle_webhook(db, provider, body, headers)
            for body, headers in provider.take_webhooks() for _ in range(times)]


def placed(db: Any, provider: InMemoryPaymentProvider, **kw: Any) -> OrderStream:
    stream = OrderStream.place(place_order(**kw))
    deliver(db, provider, stream.envelopes[0])
    return stream


def test_a_card_link_paid_once_with_every_webhook_twice_pays_the_order_once(db: Any, provider: Any) -> None:
    order = placed(db, provider)
    link = payments.create_payment_link(db, provider, order.order_id, ACTOR)
    assert link["amount"] == "44.99" and link["currency"] == "EUR" and link["status"] == "open"
    assert payments.create_payment_link(db, provider, order.order_id, ACTOR) == link  # asked twice: one link
    provider.pay(link["link_id"])
    assert [a["duplicate"] for a in webhooks(db, provider, times=2)] == [False, True]
    summary = payments.summary(db, order.order_id)
    assert summary["status"] == "paid" and summary["captured"] == "44.99" and summary["balance_due"] == "0.00"
    assert [e["kind"] for e in summary["ledger"]] == ["authorized", "captured"]
    assert summary["payments"][0]["status"] == "succeeded" and summary["paid_at"]
    assert types(db, order.order_id).count("payment.received.v1") == 1


def test_a_declined_card_leaves_the_order_unpaid_and_says_why(db: Any, provider: Any) -> None:
    order = placed(db, provider)
    link = payments.create_payment_link(db, provider, order.order_id, ACTOR)
    provider.pay(link["link_id"], CARD_DECLINE)
    webhooks(db, provider)
    summary = payments.summary(db, order.order_id)
    assert summary["status"] == "unpaid" and summary["balance_due"] == "44.99"
    assert [e["kind"] for e in summary["ledger"]] == ["failed"]
    failed = [e for e in published(db, order.order_id) if e.type == "payment.failed.v1"]
    assert failed[0].data["decline_code"] == "card_declined"


def test_3ds_is_in_progress_until_the_customer_confirms(db: Any, provider: Any) -> None:
    order = placed(db, provider)
    link = payments.create_payment_link(db, provider, order.order_id, ACTOR)
    paid = provider.pay(link["link_id"], CARD_3DS)
    webhooks(db, provider)
    assert payments.summary(db, order.order_id)["status"] == "in_progress"
    provider.confirm_3ds(paid.id)
    webhooks(db, provider)
    assert payments.summary(db, order.order_id)["status"] == "paid"


def test_authorized_money_is_captured_when_the_order_ships(db: Any, provider: Any) -> None:
    order = placed(db, provider)
    link = payments.create_payment_link(db, provider, order.order_id, ACTOR, {"capture_method": "manual"})
    paid = provider.pay(link["link_id"])
    webhooks(db, provider)
    summary = payments.summary(db, order.order_id)
    assert summary["status"] == "in_progress" and summary["pending"] == "44.99"
    for stage in ("confirmed", "approved", "processed"):
        deliver(db, provider, order.move(stage))
    assert not [c for c in provider.calls if c[0] == "capture"]
    deliver(db, provider, order.move("shipped"))
    assert provider.get_payment(paid.id).amount_captured == Decimal("44.99")
    webhooks(db, provider)  # the provider's payment.succeeded for our own capture changes nothing
    summary = payments.summary(db, order.order_id)
    assert summary["status"] == "paid" and summary["captured"] == "44.99" and summary["pending"] == "0.00"
    assert types(db, order.order_id).count("payment.received.v1") == 1


def test_a_cancelled_order_gets_its_card_money_back_and_cash_listed_for_staff(db: Any, provider: Any) -> None:
    order = placed(db, provider, payment_method="cash_on_delivery")
    payments.record_manual_payment(db, order.order_id, {"amount": "4.99", "reference": "till-7"}, ACTOR)
    link = payments.create_payment_link(db, provider, order.order_id, ACTOR)
    assert link["amount"] == "40.00"
    provider.pay(link["link_id"])
    webhooks(db, provider)
    assert payments.summary(db, order.order_id)["status"] == "paid"
    env = order.move("cancelled")
    deliver(db, provider, env)
    deliver(db, provider, env)  # redelivered: the inbox applies it once
    refunds = [(r.amount, r.reference) for r in provider.refunds]
    assert refunds == [(Decimal("40.00"), f"auto-refund:cancelled:{env.id}")]
    webhooks(db, provider)  # refund.succeeded for our own refund: already recorded
    summary = payments.summary(db, order.order_id)
    assert summary["status"] == "refunded" and summary["refunded"] == "44.99"
    worklist = payments.manual_refunds(db)["items"]
    mine = [i for i in worklist if i["order_id"] == order.order_id]
    assert [(i["amount"], i["currency"]) for i in mine] == [("4.99", "EUR")]
    payments.mark_refund_paid_out(db, order.order_id, {"reference": mine[0]["reference"]}, ACTOR)
    assert not [i for i in payments.manual_refunds(db)["items"] if i["order_id"] == order.order_id]


def test_money_paid_after_the_order_was_cancelled_goes_back_at_once(db: Any, provider: Any) -> None:
    order = placed(db, provider)
    link = payments.create_payment_link(db, provider, order.order_id, ACTOR)
    deliver(db, provider, order.move("cancelled"))
    provider.pay(link["link_id"])  # the customer pays the old link
    webhooks(db, provider)
    assert [r.amount for r in provider.refunds] == [Decimal("44.99")]
    assert payments.summary(db, order.order_id)["status"] == "refunded"


def test_a_provider_outage_is_a_provider_failed_problem_and_records_nothing(db: Any, provider: Any) -> None:
    order = placed(db, provider)
    provider.fail_next = ProviderUnavailable("down")
    with pytest.raises(ProviderFailed) as failed:
        payments.create_payment_link(db, provider, order.order_id, ACTOR)
    assert failed.value.status == 502 and failed.value.type == "urn:oms:problem:provider-failed"
    assert failed.value.extra["order_id"] == order.order_id and "down" in failed.value.detail
    assert payments.summary(db, order.order_id)["payments"] == []


def test_a_forged_webhook_is_rejected(db: Any, provider: Any) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        payments.handle_webhook(db, provider, "{}", {"webhook-id": "msg_forged", "webhook-signature": "v1,AAAA"})
    assert rejected.value.status == 400 and rejected.value.extra == {"reason": "signature"}


@pytest.mark.parametrize(("currency", "price", "refund_total"), [
    ("JPY", "1999", "1999"), ("KRW", "15000", "15000"), ("TND", "10.005", "10.005"), ("KWD", "3.125", "3.125"),
])
def test_exact_amounts_in_currencies_without_two_decimals(
    db: Any, provider: Any, currency: str, price: str, refund_total: str
) -> None:
    order = placed(db, provider, currency=currency, lines=(("TEA", 2, price),), shipping="0")
    link = payments.create_payment_link(db, provider, order.order_id, ACTOR)
    assert link["currency"] == currency and Decimal(link["amount"]) == 2 * Decimal(price)
    provider.pay(link["link_id"])
    webhooks(db, provider)
    preview = payments.refund_preview(db, order.order_id, {"lines": {"TEA": 1}})
    assert preview["ok"] and preview["total"] == refund_total
    payments.refund(db, provider, order.order_id, {"lines": {"TEA": 1}}, ACTOR, idempotency_key="r-1")
    summary = payments.summary(db, order.order_id)
    assert summary["status"] == "partially_refunded" and summary["refunded"] == refund_total
    assert provider.refunds[0].amount == Decimal(refund_total)


def test_marked_paid_on_the_order_is_money_received_by_hand(db: Any, provider: Any) -> None:
    order = placed(db, provider, payment_method=None)
    deliver(db, provider, order.choose_method("bank_transfer", paid=True))
    summary = payments.summary(db, order.order_id)
    assert summary["status"] == "paid" and summary["payment_method"] == "bank_transfer"
    assert [(p["id"], p["method"]) for p in summary["payments"]] == [(f"legacy-paid:{order.order_id}",
                                                                       "bank_transfer")]
