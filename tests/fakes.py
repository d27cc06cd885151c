"""Fakes at the ports: stand-ins for a service over RPC, and an in-memory card payment provider."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.payments.contracts.sandbox import CARD_3DS, CARD_DECLINE, CARD_SUCCESS
from services.payments.provider import (
    CaptureMethod,
    PaymentLink,
    PaymentProvider,
    PaymentResult,
    ProviderDeclined,
    ProviderPaymentStatus,
    ProviderRequestError,
    RefundResult,
    WebhookEvent,
    WebhookVerificationError,
)
from shared.errors import DomainError, to_wire
from shared.money import ZERO, normalize_currency, parse_amount


async def answer_place_orders(
    place_one: Callable[..., Awaitable[Any]], requests: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Answer the gateway's batched ``orders.place_orders`` item by item, as the orders service does."""
    answers = []
    for request in requests:
        try:
            answers.append({"result": await place_one(**request)})
        except DomainError as exc:
            answers.append({"error": to_wire(exc)})
    return answers


# ------------------------------------------------------------------------------------------------ payment provider


class InMemoryPaymentProvider(PaymentProvider):
    """A card provider in memory, at the ``PaymentProvider`` port: links, authorize/capture, void, refund.

    It keeps the sandbox's rules that matter to the payments use cases (the test cards, idempotency keys
    replaying the first answer, manual capture, refunds up to what was captured) and queues a webhook for
    every state change; a test delivers them with :meth:`take_webhooks` (each a ``(body, headers)`` pair for
    ``handle_webhook``), in order, twice, or not at all. ``fail_next`` makes the next call fail as an outage.
    """

    def __init__(self) -> None:
        self.links: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: list[RefundResult] = []
        self.calls: list[tuple[str, str]] = []  # (operation, idempotency key)
        self.fail_next: Exception | None = None
        self._answers: dict[tuple[str, str], Any] = {}
        self._webhooks: dict[str, WebhookEvent] = {}
        self._queue: list[str] = []

    # -- test controls ---------------------------------------------------------------------------------

    def pay(self, link_id: str, card: str = CARD_SUCCESS) -> PaymentResult:
        """The customer pays the link (as on the hosted page); a decline answers with a failed payment."""
        try:
            return self.authorize(link_id, card, idempotency_key=f"pay:{uuid.uuid4()}")
        except ProviderDeclined as exc:
            return self._result(self.payments[str(exc.payment_id)])

    def confirm_3ds(self, payment_id: str, success: bool = True) -> PaymentResult:
        payment = self.payments[payment_id]
        if not success:
            self._decline(payment, "authentication_failed")
            return self._result(payment)
        return self._authorized(payment)

    def take_webhooks(self) -> list[tuple[str, dict[str, str]]]:
        """The webhooks sent since the last call, as ``(body, headers)`` to hand to ``handle_webhook``."""
        queued, self._queue = self._queue, []
        return [(json.dumps({"webhook_id": wid}), {"webhook-id": wid, "webhook-signature": "fake"}) for wid in queued]

    # -- PaymentProvider -------------------------------------------------------------------------------

    def create_payment_link(
        self, amount: Decimal, currency: str, reference: str, *, idempotency_key: str,
        capture_method: CaptureMethod = CaptureMethod.AUTOMATIC,
    ) -> PaymentLink:
        def create() -> PaymentLink:
            link_id = f"plink_{uuid.uuid4().hex[:12]}"
            self.links[link_id] = {"amount": parse_amount(amount, currency), "currency": normalize_currency(currency),
                                   "reference": reference, "capture_method": CaptureMethod(capture_method).value,
                                   "payment_id": None}
            return PaymentLink(link_id, f"https://pay.example/{link_id}", self.links[link_id]["amount"],
                               self.links[link_id]["currency"], reference, "open")

        return self._once("create_payment_link", idempotency_key, create)

    def authorize(self, link_id: str, card_number: str, *, idempotency_key: str) -> PaymentResult:
        def authorize() -> PaymentResult:
            link = self.links[link_id]
            payment = {"id": f"pay_{uuid.uuid4().hex[:12]}", "link_id": link_id, "reference": link["reference"],
                       "amount": link["amount"], "currency": link["currency"], "capture_method": link["capture_method"],
                       "status": "failed", "amount_authorized": ZERO, "amount_captured": ZERO,
                       "amount_refunded": ZERO, "decline_code": None}
            self.payments[payment["id"]] = payment
            link["payment_id"] = payment["id"]
            if card_number == CARD_DECLINE:
                self._decline(payment, "card_declined")
                raise ProviderDeclined("card_declined", "your card was declined", payment["id"])
            if card_number == CARD_3DS:
                payment["status"] = "requires_action"
                self._send("payment.requires_action", payment)
                return self._result(payment)
            return self._authorized(payment)

        return self._once("authorize", idempotency_key, authorize)

    def capture(self, payment_id: str, amount: Decimal | None = None, *, idempotency_key: str) -> PaymentResult:
        def capture() -> PaymentResult:
            payment = self._payment(payment_id, "requires_capture")
            taken = payment["amount_authorized"] if amount is None else amount
            if taken > payment["amount_authorized"]:
                raise ProviderRequestError(400, "amount_too_large", f"only {payment['amount_authorized']} authorized")
            payment.update(status="succeeded", amount_captured=taken)
            self._send("payment.succeeded", payment)
            return self._result(payment)

        return self._once("capture", idempotency_key, capture)

    def void(self, payment_id: str, *, idempotency_key: str) -> PaymentResult:
        def void() -> PaymentResult:
            payment = self._payment(payment_id, "requires_capture", "requires_action")
            payment["status"] = "canceled"
            self._send("payment.canceled", payment)
            return self._result(payment)

        return self._once("void", idempotency_key, void)

    def refund(
        self, payment_id: str, amount: Decimal, *, idempotency_key: str, reference: str | None = None
    ) -> RefundResult:
        def refund() -> RefundResult:
            payment = self._payment(payment_id, "succeeded")
            if amount > payment["amount_captured"] - payment["amount_refunded"]:
                raise ProviderRequestError(400, "amount_too_large", "more than is left on the payment")
            payment["amount_refunded"] += amount
            result = RefundResult(f"re_{uuid.uuid4().hex[:12]}", payment_id, amount, payment["currency"],
                                  "succeeded", reference)
            self.refunds.append(result)
            self._send("refund.succeeded", {"id": result.id, "payment_id": payment_id, "amount": amount,
                                            "currency": result.currency, "status": "succeeded",
                                            "reference": reference}, object_type="refund")
            return result

        return self._once("refund", idempotency_key, refund)

    def get_payment(self, payment_id: str) -> PaymentResult:
        return self._result(self.payments[payment_id])

    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
        self.parse_webhook(body, headers, now=now)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> WebhookEvent:
        wid = headers.get("webhook-id", "")
        if headers.get("webhook-signature") != "fake" or wid not in self._webhooks:
            raise WebhookVerificationError("not a webhook this provider sent")
        return self._webhooks[wid]

    # -- inside ----------------------------------------------------------------------------------------

    def _once(self, operation: str, key: str, call: Callable[[], Any]) -> Any:
        """Idempotency as a provider does it: the same key answers the first answer again."""
        self.calls.append((operation, key))
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure
        if (operation, key) not in self._answers:
            self._answers[operation, key] = call()
        return self._answers[operation, key]

    def _payment(self, payment_id: str, *states: str) -> dict[str, Any]:
        payment = self.payments.get(payment_id)
        if payment is None:
            raise ProviderRequestError(404, "resource_missing", f"no payment {payment_id}")
        if payment["status"] not in states:
            raise ProviderRequestError(409, "payment_unexpected_state", f"payment is {payment['status']}")
        return payment

    def _authorized(self, payment: dict[str, Any]) -> PaymentResult:
        payment["amount_authorized"] = payment["amount"]
        if payment["capture_method"] == "automatic":
            payment.update(status="succeeded", amount_captured=payment["amount"])
            self._send("payment.succeeded", payment)
        else:
            payment["status"] = "requires_capture"
            self._send("payment.authorized", payment)
        return self._result(payment)

    def _decline(self, payment: dict[str, Any], code: str) -> None:
        payment.update(status="failed", decline_code=code)
        self._send("payment.failed", payment)

    def _send(self, event_type: str, obj: Mapping[str, Any], *, object_type: str = "payment") -> None:
        data = {k: str(v) if isinstance(v, Decimal) else v for k, v in obj.items()}
        wid = f"msg_{uuid.uuid4().hex}"
        self._webhooks[wid] = WebhookEvent(
            webhook_id=wid, event_id=f"evt_{uuid.uuid4().hex[:12]}", type=event_type, created_at=datetime.now(UTC),
            object_type=object_type, object_id=str(obj["id"]),
            payment_id=str(obj["id"]) if object_type == "payment" else str(obj["payment_id"]),
            status=obj.get("status"), amount=obj.get("amount"), currency=obj.get("currency"),
            data={**data, "object": object_type},
        )
        self._queue.append(wid)

    @staticmethod
    def _result(payment: Mapping[str, Any]) -> PaymentResult:
        return PaymentResult(
            id=payment["id"], status=ProviderPaymentStatus(payment["status"]), amount=payment["amount"],
            currency=payment["currency"], amount_authorized=payment["amount_authorized"],
            amount_captured=payment["amount_captured"], amount_refunded=payment["amount_refunded"],
            reference=payment["reference"], link_id=payment["link_id"], decline_code=payment["decline_code"],
        )
