"""Card payment provider adapter: the interface the payments service calls, and its HTTP implementation.

Why an adapter: the service must not know any provider's wire format. It asks for a payment link,
captures, voids, refunds, and receives webhooks as :class:`WebhookEvent` values; swapping the sandbox for
a real provider means writing another :class:`PaymentProvider`, nothing else.

Failure taxonomy, which decides what callers do next:

* :class:`ProviderUnavailable`: transport error, timeout, HTTP 5xx/429, or an idempotent request still in
  flight. The outcome is *unknown*; retry **with the same idempotency key** (the provider then returns
  the original result instead of charging twice).
* :class:`ProviderDeclined`: the provider answered and said no (card declined, 3-D Secure failed). Final
  for that attempt; the order stays unpaid and the customer may try another card.
* :class:`ProviderRequestError`: any other 4xx (bad amount, wrong state, key reused with another body).
  A bug or a race on our side; retrying the same request will not help.

Webhooks are signed Standard Webhooks style (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, secret ``whsec_<base64>``).
The signing helpers live here so the sandbox and the verifier cannot drift apart.
"""

from __future__ import annotations

import abc
import base64
import binascii
import enum
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

WEBHOOK_TOLERANCE_SECONDS = 5 * 60
SECRET_PREFIX = "whsec_"


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------


class ProviderError(Exception):
    """Base class of everything the adapter raises."""


class ProviderUnavailable(ProviderError):
    """Outcome unknown (network, timeout, 5xx): retry later with the *same* idempotency key."""


class ProviderDeclined(ProviderError):
    """The provider refused the payment (e.g. ``card_declined``); final for this attempt."""

    def __init__(self, code: str, message: str, payment_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.payment_id = payment_id


class ProviderRequestError(ProviderError):
    """The provider rejected the request itself (4xx other than a decline); do not retry as is."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message


class WebhookVerificationError(ProviderError):
    """Signature missing or wrong, or timestamp outside the tolerance: answer 400 and ignore the body."""


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------


class ProviderPaymentStatus(str, enum.Enum):
    """Provider-side state of one payment attempt (not the order's payment status)."""

    REQUIRES_ACTION = "requires_action"  # customer must complete 3-D Secure
    REQUIRES_CAPTURE = "requires_capture"  # authorized: funds reserved, not taken
    SUCCEEDED = "succeeded"  # captured (fully or partially)
    CANCELED = "canceled"  # authorization voided
    FAILED = "failed"  # declined / authentication failed


class CaptureMethod(str, enum.Enum):
    AUTOMATIC = "automatic"  # authorize and capture in one step
    MANUAL = "manual"  # authorize now, capture later (e.g. at shipping)


@dataclass(frozen=True)
class PaymentLink:
    id: str
    url: str
    amount: Decimal
    currency: str
    reference: str
    status: str


@dataclass(frozen=True)
class PaymentResult:
    id: str
    status: ProviderPaymentStatus
    amount: Decimal
    currency: str
    amount_authorized: Decimal
    amount_captured: Decimal
    amount_refunded: Decimal
    reference: str | None = None
    link_id: str | None = None
    next_action_url: str | None = None
    decline_code: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class RefundResult:
    id: str
    payment_id: str
    amount: Decimal
    currency: str
    status: str
    reference: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook. ``webhook_id`` is stable across retries and duplicates: dedupe on it."""

    webhook_id: str
    event_id: str
    type: str
    created_at: datetime
    object_type: str
    object_id: str
    payment_id: str | None
    status: str | None
    amount: Decimal | None
    currency: str | None
    data: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


# ---------------------------------------------------------------------------------------------------------
# Interface
# ---------------------------------------------------------------------------------------------------------


class PaymentProvider(abc.ABC):
    """What the payments service needs from a card provider. Every mutating call takes the caller's
    idempotency key: derive it from stable ids (``f"{order_id}:capture:{payment_id}"``) so a retry after
    a crash or a :class:`ProviderUnavailable` cannot move money twice."""

    @abc.abstractmethod
    def create_payment_link(
        self,
        amount: Decimal,
        currency: str,
        reference: str,
        *,
        idempotency_key: str,
        capture_method: CaptureMethod = CaptureMethod.AUTOMATIC,
    ) -> PaymentLink: ...

    @abc.abstractmethod
    def authorize(self, link_id: str, card_number: str, *, idempotency_key: str) -> PaymentResult:
        """Pay a link with a card (what the hosted page does). Raises :class:`ProviderDeclined`."""

    @abc.abstractmethod
    def capture(
        self, payment_id: str, amount: Decimal | None = None, *, idempotency_key: str
    ) -> PaymentResult: ...

    @abc.abstractmethod
    def void(self, payment_id: str, *, idempotency_key: str) -> PaymentResult: ...

    @abc.abstractmethod
    def refund(
        self, payment_id: str, amount: Decimal, *, idempotency_key: str, reference: str | None = None
    ) -> RefundResult: ...

    @abc.abstractmethod
    def get_payment(self, payment_id: str) -> PaymentResult:
        """Current state, for reconciling when a webhook is late or lost."""

    @abc.abstractmethod
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
        """Raise :class:`WebhookVerificationError` unless the body is authentic and fresh."""

    @abc.abstractmethod
    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> WebhookEvent:
        """Verify, then decode the event. Never returns data from an unverified body."""


# ---------------------------------------------------------------------------------------------------------
# Webhook signing (Standard Webhooks)
# ---------------------------------------------------------------------------------------------------------


def generate_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def decode_webhook_secret(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret must be 'whsec_' followed by base64") from exc


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256("{id}.{ts}.{body}")>``."""
    to_sign = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_webhook_secret(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def verify_webhook_signature(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance: int = WEBHOOK_TOLERANCE_SECONDS,
) -> str:
    """Check signature and freshness; return the ``webhook-id``.

    The timestamp window (both directions) stops replays of an old, validly signed message. Several
    space-separated signatures are accepted so the provider can rotate secrets.
    """
    msg_id = _header(headers, "webhook-id")
    ts_raw = _header(headers, "webhook-timestamp")
    sig_header = _header(headers, "webhook-signature")
    if not msg_id or not ts_raw or not sig_header:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(ts_raw)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp outside the tolerance window")
    expected = sign_webhook(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in sig_header.split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected.encode()):
            return msg_id
    raise WebhookVerificationError("no valid webhook signature")


# ---------------------------------------------------------------------------------------------------------
# HTTP implementation
# ---------------------------------------------------------------------------------------------------------


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, float):
        raise ProviderError(f"provider sent {name} as a float; refusing to guess the amount")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ProviderError(f"provider sent an invalid {name}: {value!r}") from None


def _payment(data: Mapping[str, Any]) -> PaymentResult:
    next_action = data.get("next_action") or {}
    return PaymentResult(
        id=str(data["id"]),
        status=ProviderPaymentStatus(data["status"]),
        amount=_decimal(data["amount"], "amount"),
        currency=str(data["currency"]),
        amount_authorized=_decimal(data.get("amount_authorized", "0"), "amount_authorized"),
        amount_captured=_decimal(data.get("amount_captured", "0"), "amount_captured"),
        amount_refunded=_decimal(data.get("amount_refunded", "0"), "amount_refunded"),
        reference=data.get("reference"),
        link_id=data.get("link_id"),
        next_action_url=next_action.get("url"),
        decline_code=data.get("decline_code"),
        raw=dict(data),
    )


class HttpSandboxProvider(PaymentProvider):
    """Talks to the sandbox provider (``services.payments.provider.sandbox``) over HTTP.

    Uses a synchronous ``httpx.Client`` on purpose: Nameko workers run under eventlet, which makes the
    blocking sockets cooperative. Each call has connect/read timeouts so a hung provider turns into
    :class:`ProviderUnavailable` instead of a stuck worker.
    """

    def __init__(
        self,
        base_url: str,
        webhook_secret: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = httpx.Timeout(10.0, connect=3.0),
        client: httpx.Client | None = None,
        webhook_tolerance: int = WEBHOOK_TOLERANCE_SECONDS,
    ) -> None:
        decode_webhook_secret(webhook_secret)  # fail at start-up, not on the first webhook
        self.webhook_secret = webhook_secret
        self.webhook_tolerance = webhook_tolerance
        headers = {"Accept": "application/json", "User-Agent": "oms-payments/0.1"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._owns_client = client is None
        self._client = client or httpx.Client(base_url=base_url, timeout=timeout, headers=headers)
        if client is not None:
            self._client.headers.update(headers)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> HttpSandboxProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, idempotency_key: str, json_body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        if not idempotency_key:
            raise ValueError("every provider call needs an idempotency key")
        try:
            response = self._client.request(
                method, path, json=json_body, headers={"Idempotency-Key": idempotency_key}
            )
        except httpx.TransportError as exc:  # timeouts, refused connections, resets
            raise ProviderUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        status = response.status_code
        if status >= 500 or status == 429:
            raise ProviderUnavailable(f"{method} {path}: provider answered HTTP {status}")
        if status < 400:
            if not payload:
                raise ProviderUnavailable(f"{method} {path}: HTTP {status} without a JSON body")
            return payload
        error = payload.get("error") or {}
        code = str(error.get("code") or f"http_{status}")
        message = str(error.get("message") or response.text[:200])
        if error.get("type") == "card_error":
            raise ProviderDeclined(code, message, error.get("payment_id"))
        if status == 409 and code == "idempotency_in_progress":
            raise ProviderUnavailable(f"{method} {path}: request with this key still in progress")
        raise ProviderRequestError(status, code, message)

    # -- API -------------------------------------------------------------------------------------------

    def create_payment_link(
        self,
        amount: Decimal,
        currency: str,
        reference: str,
        *,
        idempotency_key: str,
        capture_method: CaptureMethod = CaptureMethod.AUTOMATIC,
    ) -> PaymentLink:
        if not isinstance(amount, Decimal):
            raise TypeError("amount must be a Decimal")
        data = self._request(
            "POST",
            "/v1/payment_links",
            idempotency_key=idempotency_key,
            json_body={
                "amount": str(amount),
                "currency": currency,
                "reference": reference,
                "capture_method": CaptureMethod(capture_method).value,
            },
        )
        return PaymentLink(
            id=data["id"],
            url=data["url"],
            amount=_decimal(data["amount"], "amount"),
            currency=data["currency"],
            reference=data["reference"],
            status=data["status"],
        )

    def authorize(self, link_id: str, card_number: str, *, idempotency_key: str) -> PaymentResult:
        data = self._request(
            "POST",
            f"/v1/payment_links/{link_id}/pay",
            idempotency_key=idempotency_key,
            json_body={"card_number": card_number},
        )
        return _payment(data)

    def confirm_3ds(self, payment_id: str, *, idempotency_key: str, success: bool = True) -> PaymentResult:
        """Sandbox only: play the customer's part of 3-D Secure (real providers do it on their page)."""
        data = self._request(
            "POST",
            f"/v1/payments/{payment_id}/confirm_3ds",
            idempotency_key=idempotency_key,
            json_body={"success": success},
        )
        return _payment(data)

    def capture(
        self, payment_id: str, amount: Decimal | None = None, *, idempotency_key: str
    ) -> PaymentResult:
        if amount is not None and not isinstance(amount, Decimal):
            raise TypeError("amount must be a Decimal")
        body = {} if amount is None else {"amount": str(amount)}
        data = self._request(
            "POST", f"/v1/payments/{payment_id}/capture", idempotency_key=idempotency_key, json_body=body
        )
        return _payment(data)

    def void(self, payment_id: str, *, idempotency_key: str) -> PaymentResult:
        data = self._request(
            "POST", f"/v1/payments/{payment_id}/void", idempotency_key=idempotency_key, json_body={}
        )
        return _payment(data)

    def refund(
        self, payment_id: str, amount: Decimal, *, idempotency_key: str, reference: str | None = None
    ) -> RefundResult:
        if not isinstance(amount, Decimal):
            raise TypeError("amount must be a Decimal")
        body: dict[str, Any] = {"payment_id": payment_id, "amount": str(amount)}
        if reference is not None:
            body["reference"] = reference
        data = self._request("POST", "/v1/refunds", idempotency_key=idempotency_key, json_body=body)
        return RefundResult(
            id=data["id"],
            payment_id=data["payment_id"],
            amount=_decimal(data["amount"], "amount"),
            currency=data["currency"],
            status=data["status"],
            reference=data.get("reference"),
        )

    def get_payment(self, payment_id: str) -> PaymentResult:
        # Reads are naturally idempotent; the key is still sent so every call is traceable at the provider.
        data = self._request("GET", f"/v1/payments/{payment_id}", idempotency_key=f"get-{uuid.uuid4()}")
        return _payment(data)

    # -- webhooks --------------------------------------------------------------------------------------

    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
        verify_webhook_signature(
            self.webhook_secret, body, headers, now=now, tolerance=self.webhook_tolerance
        )

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> WebhookEvent:
        msg_id = verify_webhook_signature(
            self.webhook_secret, body, headers, now=now, tolerance=self.webhook_tolerance
        )
        try:
            event = json.loads(body)
            obj = event["data"]["object"]
            object_type = str(obj.get("object", ""))
            amount = obj.get("amount")
            return WebhookEvent(
                webhook_id=msg_id,
                event_id=str(event["id"]),
                type=str(event["type"]),
                created_at=datetime.fromtimestamp(int(event["created"]), tz=UTC),
                object_type=object_type,
                object_id=str(obj["id"]),
                payment_id=str(obj["id"]) if object_type == "payment" else obj.get("payment_id"),
                status=obj.get("status"),
                amount=None if amount is None else _decimal(amount, "amount"),
                currency=obj.get("currency"),
                data=obj,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WebhookVerificationError(f"signed webhook has an unexpected shape: {exc}") from exc
