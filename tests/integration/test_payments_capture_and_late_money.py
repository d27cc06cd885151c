"""Authorize-then-capture, 3-D Secure, and money that arrives after the order was cancelled: the payments
use cases in-process against a real Postgres and the sandbox provider over HTTP (events moved by hand
between the two services, as in ``test_payments_service``)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from services.orders import domain as order_domain
from services.orders import usecases as orders
from services.payments import usecases as payments
from services.payments.contracts.sandbox import CARD_3DS, CARD_SUCCESS
from services.payments.provider import HttpSandboxProvider, ProviderDeclined
from services.payments.provider.sandbox import SandboxState
from shared.errors import InvalidRequest, NotAllowedInThisState
from tests.integration.test_payments_service import (
    ACTOR,
    TOTAL,
    outbox_events,
    payments_db,
    place_card_order,
    sandbox,
    sync,
    webhook,
)

pytestmark = pytest.mark.integration
__all__ = ["payments_db", "sandbox"]  # module fixtures shared with test_payments_service

Sandbox = tuple[SandboxState, HttpSandboxProvider]


def deliver_webhooks(state: SandboxState, provider: HttpSandboxProvider, db: Any, payment_id: str) -> None:
    """Every webhook the provider sent about the payment so far, each delivered (the inbox dedupes)."""
    for e in list(state.events):
        obj = e["data"]["object"]
        if payment_id in (obj.get("id"), obj.get("payment_id")):
            webhook(provider, db, e)


def move(orders_db: Any, ref: str, *stages: str) -> dict[str, Any]:
    order: dict[str, Any] = {}
    for stage in stages:
        order = orders.change(orders_db, ref, ACTOR, lambda o, a, now, s=stage: order_domain.transition(
            o, s, a, None, now).as_outcome(), "transition")
    return order


def authorize(state: SandboxState, provider: HttpSandboxProvider, db: Any, ref: str, card: str = CARD_SUCCESS,
              capture_method: str = "manual") -> tuple[dict[str, Any], str]:
    link = payments.create_payment_link(db, provider, ref, ACTOR, {"capture_method": capture_method})
    assert link["capture_method"] == capture_method
    result = provider.authorize(link["link_id"], card, idempotency_key=str(uuid.uuid4()))
    deliver_webhooks(state, provider, db, result.id)
    return link, result.id


def test_an_authorized_card_confirms_the_order_and_is_captured_when_it_ships(
    orders_db: Any, payments_db: Any, sandbox: Sandbox
) -> None:
    state, provider = sandbox
    ref = place_card_order(orders_db, payments_db, provider)
    _link, pid = authorize(state, provider, payments_db, ref)
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "in_progress" and Decimal(summary["pending"]) == TOTAL
    assert Decimal(summary["captured"]) == 0 and summary["paid_at"] is None
    assert provider.get_payment(pid).amount_captured == 0  # the money is only held on the card
    sync(orders_db, payments_db, provider, ref)
    order = orders.get_order(orders_db, ref)
    assert order["stage"] == "confirmed" and order["payment_authorized"] is True
    assert order["payment_status"] == "in_progress"

    move(orders_db, ref, "approved", "processed")
    sync(orders_db, payments_db, provider, ref)
    assert payments.summary(payments_db, ref)["status"] == "in_progress"  # not yet: captured at shipping
    move(orders_db, ref, "shipped")
    sync(orders_db, payments_db, provider, ref)
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "paid" and Decimal(summary["captured"]) == TOTAL and summary["paid_at"]
    assert Decimal(summary["pending"]) == 0
    assert provider.get_payment(pid).amount_captured == TOTAL
    deliver_webhooks(state, provider, payments_db, pid)  # the provider's payment.succeeded: already known
    assert [e["kind"] for e in payments.summary(payments_db, ref)["ledger"]] == ["authorized", "captured"]
    assert [e.type for e in outbox_events(payments_db, ref)].count("payment.received.v1") == 1
    sync(orders_db, payments_db, provider, ref)
    order = orders.get_order(orders_db, ref)
    assert order["payment_status"] == "paid" and order["paid_at"] and order["payment_authorized"] is False


def test_staff_capture_part_of_an_authorization_and_the_rest_is_released(
    orders_db: Any, payments_db: Any, sandbox: Sandbox
) -> None:
    state, provider = sandbox
    ref = place_card_order(orders_db, payments_db, provider)
    _link, pid = authorize(state, provider, payments_db, ref)
    with pytest.raises(InvalidRequest) as too_much:
        payments.capture_payment(payments_db, provider, ref, {"amount": "50.00"}, ACTOR)
    assert too_much.value.extra["errors"][0]["field"] == "amount"
    with pytest.raises(InvalidRequest) as unknown:
        payments.capture_payment(payments_db, provider, ref, {"payment_id": "pay_nope"}, ACTOR)
    assert unknown.value.extra["errors"][0]["field"] == "payment_id" and unknown.value.status == 422

    summary = payments.capture_payment(payments_db, provider, ref, {"amount": "40.00"}, ACTOR)
    assert summary["status"] == "partially_paid" and summary["captured"] == "40.00"
    assert summary["balance_due"] == "4.99" and summary["pending"] == "0.00"
    assert [(e["kind"], e["amount"]) for e in summary["ledger"]] == [
        ("authorized", "44.99"), ("captured", "40.00"), ("voided", "4.99")]
    assert provider.get_payment(pid).amount_captured == Decimal("40.00")
    deliver_webhooks(state, provider, payments_db, pid)  # payment.succeeded for 40.00: the same facts
    assert len(payments.summary(payments_db, ref)["ledger"]) == 3
    with pytest.raises(NotAllowedInThisState) as nothing:  # nothing left to capture: 409, the state says no
        payments.capture_payment(payments_db, provider, ref, {}, ACTOR)
    assert nothing.value.status == 409


def test_a_3d_secure_payment_is_in_progress_until_the_customer_confirms(
    orders_db: Any, payments_db: Any, sandbox: Sandbox
) -> None:
    state, provider = sandbox
    ref = place_card_order(orders_db, payments_db, provider)
    link, pid = authorize(state, provider, payments_db, ref, card=CARD_3DS, capture_method="automatic")
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "in_progress" and Decimal(summary["captured"]) == 0
    assert [p["status"] for p in summary["payments"]] == ["requires_action"]
    sync(orders_db, payments_db, provider, ref)
    order = orders.get_order(orders_db, ref)
    assert order["stage"] == "placed" and order["payment_status"] == "in_progress"  # not paid: not confirmed

    provider.confirm_3ds(pid, idempotency_key=str(uuid.uuid4()))
    deliver_webhooks(state, provider, payments_db, pid)
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "paid" and Decimal(summary["captured"]) == TOTAL
    sync(orders_db, payments_db, provider, ref)
    assert orders.get_order(orders_db, ref)["stage"] == "confirmed"


def test_a_failed_3d_secure_leaves_the_order_unpaid_and_payable_again(
    orders_db: Any, payments_db: Any, sandbox: Sandbox
) -> None:
    state, provider = sandbox
    ref = place_card_order(orders_db, payments_db, provider)
    link, pid = authorize(state, provider, payments_db, ref, card=CARD_3DS, capture_method="automatic")
    with pytest.raises(ProviderDeclined):
        provider.confirm_3ds(pid, idempotency_key=str(uuid.uuid4()), success=False)
    deliver_webhooks(state, provider, payments_db, pid)
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "unpaid" and [p["status"] for p in summary["payments"]] == ["failed"]
    again = payments.create_payment_link(payments_db, provider, ref, ACTOR, {"capture_method": "automatic"})
    assert again["link_id"] == link["link_id"]  # the customer retries on the same link


@pytest.mark.parametrize("stage", ["cancelled", "abandoned"])
def test_money_paid_after_the_order_was_closed_is_refunded_at_once(
    orders_db: Any, payments_db: Any, sandbox: Sandbox, stage: str
) -> None:
    state, provider = sandbox
    ref = place_card_order(orders_db, payments_db, provider)
    link = payments.create_payment_link(payments_db, provider, ref, ACTOR)
    actor = order_domain.ABANDON_TIMER.model_dump() if stage == "abandoned" else ACTOR
    orders.change(orders_db, ref, actor, lambda o, a, now: order_domain.transition(
        o, stage, a, None, now).as_outcome(), "transition")
    sync(orders_db, payments_db, provider, ref)
    assert payments.summary(payments_db, ref)["stage"] == stage
    with pytest.raises(NotAllowedInThisState) as closed:  # 409: the request is fine, the order's state is not
        payments.create_payment_link(payments_db, provider, ref, ACTOR)
    assert closed.value.status == 409

    # The customer pays the link they still have.
    result = provider.authorize(link["link_id"], CARD_SUCCESS, idempotency_key=str(uuid.uuid4()))
    deliver_webhooks(state, provider, payments_db, result.id)
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "refunded" and summary["refunded"] == summary["captured"] == str(TOTAL)
    assert provider.get_payment(result.id).amount_refunded == TOTAL
    deliver_webhooks(state, provider, payments_db, result.id)  # refund.succeeded and the rest, again
    assert [e["kind"] for e in payments.summary(payments_db, ref)["ledger"]] == ["authorized", "captured", "refunded"]
    refunds = [e for e in outbox_events(payments_db, ref) if e.type == "refund.completed.v1"]
    assert len(refunds) == 1 and refunds[0].data["reason"] == f"order {stage}"
    sync(orders_db, payments_db, provider, ref)
    order = orders.get_order(orders_db, ref)
    assert order["stage"] == stage and order["payment_status"] == "refunded"
    assert [h["action"] for h in order["history"]].count("refund_completed") == 1


def test_an_authorization_after_the_order_was_rejected_is_voided(
    orders_db: Any, payments_db: Any, sandbox: Sandbox
) -> None:
    state, provider = sandbox
    ref = place_card_order(orders_db, payments_db, provider)
    link = payments.create_payment_link(payments_db, provider, ref, ACTOR, {"capture_method": "manual"})
    move(orders_db, ref, "rejected")
    sync(orders_db, payments_db, provider, ref)
    result = provider.authorize(link["link_id"], CARD_SUCCESS, idempotency_key=str(uuid.uuid4()))
    deliver_webhooks(state, provider, payments_db, result.id)
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "unpaid" and Decimal(summary["pending"]) == 0
    assert [e["kind"] for e in summary["ledger"]] == ["authorized", "voided"]
    assert provider.get_payment(result.id).status.value == "canceled"
    deliver_webhooks(state, provider, payments_db, result.id)  # the provider's payment.canceled: known
    voided = [e for e in outbox_events(payments_db, ref) if e.type == "payment.voided.v1"]
    assert len(voided) == 1 and voided[0].data["amount"] == str(TOTAL)
    sync(orders_db, payments_db, provider, ref)
    history = [h for h in orders.get_order(orders_db, ref)["history"] if h["action"] == "payment_voided"]
    assert len(history) == 1 and history[0]["reason"] == "order rejected"


def test_cancelling_an_authorized_order_voids_it_and_the_history_shows_it(
    orders_db: Any, payments_db: Any, sandbox: Sandbox
) -> None:
    state, provider = sandbox
    ref = place_card_order(orders_db, payments_db, provider)
    _link, pid = authorize(state, provider, payments_db, ref)
    sync(orders_db, payments_db, provider, ref)
    assert orders.get_order(orders_db, ref)["stage"] == "confirmed"
    move(orders_db, ref, "cancelled")
    sync(orders_db, payments_db, provider, ref)
    summary = payments.summary(payments_db, ref)
    assert summary["status"] == "unpaid" and summary["pending"] == "0.00" and summary["captured"] == "0.00"
    assert provider.get_payment(pid).status.value == "canceled"  # the hold on the card is released
    order = orders.get_order(orders_db, ref)
    assert order["payment_status"] == "unpaid" and order["payment_authorized"] is False
    voided = [h for h in order["history"] if h["action"] == "payment_voided"]
    assert len(voided) == 1 and voided[0]["data"]["amount"] == str(TOTAL)
