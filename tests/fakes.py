"""Fakes at the ports: stand-ins for a service over RPC, an in-memory card payment provider, and in-memory
messaging channels (mail server, SMS and WhatsApp providers)."""

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


# ------------------------------------------------------------------------------------------------ shipping carrier


class InMemoryCarrier:
    """A shipping carrier in memory, at the ``CarrierProvider`` port (``services.fulfillment.carrier``).

    It keeps the sandbox carrier's rules that matter to the use cases: rates per service, a label per rate and
    idempotency key (a retry replays the first label), voids refused once the parcel is in transit (or when
    ``refuse_void`` is set), and tracking updates a test makes with :meth:`track`, which answers the
    ``(body, headers)`` of a webhook to hand to ``handle_carrier_webhook`` (any number of times, in any order).
    ``fail_next`` makes the next call fail as an outage.
    """

    SECRET = "in-memory-carrier"

    def __init__(self) -> None:
        from services.fulfillment.carrier import Label

        self.labels: dict[str, Label] = {}
        self.status: dict[str, str] = {}  # label id -> carrier tracking word
        self.by_key: dict[str, str] = {}  # idempotency key -> label id
        self.voided: list[str] = []
        self.calls: list[tuple[str, str]] = []
        self.fail_next: Exception | None = None
        self.refuse_void = False

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def rates(self, request: Any) -> Any:
        from datetime import date, timedelta

        from services.fulfillment.carrier import Rate, Rates
        from services.fulfillment.contracts.sandbox import CARRIER_NAME, SERVICES

        self._maybe_fail()
        self.calls.append(("rates", ""))
        weight = sum(int(p["weight_grams"]) for p in request.packages)
        out = []
        for i, service in enumerate(SERVICES):
            days = (5, 2, 1)[i % 3]
            amount = (Decimal("4.50") + Decimal(i * 5) + Decimal(weight) / 1000).quantize(Decimal("0.01"))
            out.append(Rate(rate_id=f"rate_{service}_{uuid.uuid4().hex[:8]}", carrier=CARRIER_NAME, service=service,
                            amount=amount, currency=request.currency,
                            estimated_delivery=date.today() + timedelta(days=days), transit_days=days))
        return Rates(out)

    def buy_label(self, rate_id: str, reference: str, idempotency_key: str) -> Any:
        from services.fulfillment.carrier import CarrierError, Label
        from services.fulfillment.contracts.sandbox import CARRIER_NAME

        self._maybe_fail()
        self.calls.append(("buy_label", idempotency_key))
        if idempotency_key in self.by_key:
            return self.labels[self.by_key[idempotency_key]]
        if not rate_id.startswith("rate_"):
            raise CarrierError(f"no rate {rate_id}", code="unknown_rate")
        service = rate_id.split("_")[1]
        lid = f"lbl_{uuid.uuid4().hex[:10]}"
        tracking = f"SBX{uuid.uuid4().hex[:10].upper()}"
        label = Label(label_id=lid, tracking_number=tracking, tracking_url=f"https://track.example/{tracking}",
                      carrier=CARRIER_NAME, service=service, amount=Decimal("7.25"), currency="EUR")
        self.labels[lid] = label
        self.status[lid] = "label_created"
        self.by_key[idempotency_key] = lid
        return label

    def label_pdf(self, label_id: str) -> bytes:
        self._maybe_fail()
        return b"%PDF-1.4\n% label " + label_id.encode() + b"\n%%EOF\n"

    def void_label(self, label_id: str, idempotency_key: str) -> Any:
        from services.fulfillment.carrier import VoidResult
        from services.fulfillment.contracts.sandbox import VOIDABLE_TRACKING

        self._maybe_fail()
        self.calls.append(("void_label", idempotency_key))
        if label_id in self.voided:
            return VoidResult(True)
        if self.refuse_void or self.status.get(label_id) not in VOIDABLE_TRACKING:
            return VoidResult(False, "label_in_transit")
        self.voided.append(label_id)
        self.status[label_id] = "voided"
        return VoidResult(True)

    def track(self, tracking_number: str, carrier_status: str, *, description: str | None = None,
              occurred_at: datetime | None = None, event_id: str | None = None) -> tuple[str, dict[str, str]]:
        """The carrier's signed webhook for a tracking update: (body, headers)."""
        label = next(lb for lb in self.labels.values() if lb.tracking_number == tracking_number)
        self.status[label.label_id] = carrier_status
        body = json.dumps({
            "id": event_id or f"evt_{uuid.uuid4().hex[:12]}", "type": "tracking.updated",
            "tracking_number": tracking_number, "label_id": label.label_id, "status": carrier_status,
            "description": description, "location": None,
            "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
        })
        return body, {"Carrier-Signature": f"secret={self.SECRET}"}

    def verify_webhook(self, body: str, headers: dict[str, str]) -> Any:
        from services.fulfillment.carrier import CarrierError, TrackingUpdate
        from services.fulfillment.contracts.sandbox import TRACKING_STATUSES

        if headers.get("Carrier-Signature") != f"secret={self.SECRET}":
            raise CarrierError("bad signature", code="bad_signature")
        data = json.loads(body)
        return TrackingUpdate(
            event_id=data["id"], label_id=data.get("label_id"), tracking_number=data["tracking_number"],
            status=TRACKING_STATUSES[data["status"]], carrier_status=data["status"],
            description=data.get("description"), location=data.get("location"),
            occurred_at=datetime.fromisoformat(data["occurred_at"]), raw=data,
        )

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------ messaging channels


class _FakeChannel:
    """What the notification channel fakes share: idempotency keys replay the first answer (as the SMS and
    WhatsApp providers do), ``down`` refuses every send as an outage (retryable), ``refuse`` maps a recipient to
    a permanent refusal (code, reason)."""

    prefix = "msg"

    def __init__(self) -> None:
        self.delivered: list[dict[str, Any]] = []  # what reached a "phone" or mailbox, once per key
        self.calls: list[str] = []  # every send call's idempotency key, repeats included
        self.down = False
        self.refuse: dict[str, tuple[str, str]] = {}
        self._answers: dict[str, Any] = {}

    def _send(self, to: str, key: str, **what: Any) -> Any:
        from services.notifications.channels import ChannelError, Sent

        self.calls.append(key)
        if self.down:
            raise ChannelError("provider unavailable (503)", code="unavailable", retryable=True)
        if key in self._answers:
            return self._answers[key]
        if to in self.refuse:
            code, reason = self.refuse[to]
            raise ChannelError(reason, code=code, retryable=False)
        sent = Sent(provider_message_id=f"{self.prefix}-{len(self.delivered) + 1}-{uuid.uuid4().hex[:6]}")
        self.delivered.append({"to": to, "key": key, "id": sent.provider_message_id, **what})
        self._answers[key] = sent
        return sent

    def to(self, recipient: str) -> list[dict[str, Any]]:
        return [m for m in self.delivered if m["to"] == recipient]


class InMemoryMail(_FakeChannel):
    """An SMTP server at the ``EmailSender`` port. Unlike the providers, SMTP has no idempotency: the same
    Message-ID sent twice is delivered twice."""

    prefix = "mail"

    def send(self, email: Any) -> Any:
        self._answers.pop(email.message_id, None)
        return self._send(email.to, email.message_id, subject=email.subject, text=email.text, html=email.html,
                          message_id=email.message_id)


class InMemorySms(_FakeChannel):
    """An SMS provider at the ``SmsSender`` port; ``receipt(...)`` builds what its webhook would carry."""

    prefix = "SM"

    def send(self, to: str, body: str, idempotency_key: str) -> Any:
        return self._send(to, idempotency_key, body=body)

    def parse_webhook(self, url: str, body: str, headers: dict[str, str]) -> list[Any]:
        from services.notifications.channels import ChannelError, Receipt

        if headers.get("X-Twilio-Signature") != "good":
            raise ChannelError("bad signature", code="bad_signature")
        data = json.loads(body)
        return [Receipt(provider_message_id=data["MessageSid"], status=data["MessageStatus"], at=datetime.now(UTC),
                        reason=data.get("ErrorCode"))]


class InMemoryWhatsApp(_FakeChannel):
    """The WhatsApp Cloud API at the ``WhatsAppSender`` port, with the 24-hour window: free text to a number
    whose window is not open (``open_window``) is refused with the provider's "re-engagement" error."""

    prefix = "wamid"

    def __init__(self) -> None:
        super().__init__()
        self.open: set[str] = set()

    def send_text(self, to: str, body: str, idempotency_key: str) -> Any:
        from services.notifications.channels import ChannelError

        if to not in self.open and not self.down:
            raise ChannelError("Re-engagement message", code="outside_window", retryable=False)
        return self._send(to, idempotency_key, type="text", body=body)

    def send_template(self, to: str, template: str, language: str, params: list[str], idempotency_key: str) -> Any:
        return self._send(to, idempotency_key, type="template", template=template, language=language,
                          params=list(params))

    def parse_webhook(self, body: str, headers: dict[str, str]) -> tuple[list[Any], list[Any]]:
        from services.notifications.channels import Inbound, Receipt

        data = json.loads(body)
        receipts = [Receipt(provider_message_id=s["id"], status=s["status"], at=datetime.now(UTC),
                            reason=s.get("reason")) for s in data.get("statuses", [])]
        inbound = [Inbound(from_number=m["from"], provider_message_id=m["id"], text=m["text"],
                           at=datetime.fromisoformat(m["at"])) for m in data.get("messages", [])]
        return receipts, inbound
