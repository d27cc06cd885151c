"""``HttpCarrier``: the carrier port (``CarrierProvider``) spoken over HTTP to a carrier API shaped like the
sandbox carrier's (``contracts/sandbox.py``), and the webhook signature both sides use.

Failure taxonomy (``CarrierError``), which decides what the use cases do next:

* ``retryable=True``: transport error, timeout, HTTP 5xx/429 (an outage). The outcome is unknown; try again
  later **with the same idempotency key** (the carrier then answers the first result, never a second label).
* ``retryable=False``: the carrier answered and refused the request (``code`` says why: ``rate_not_found``,
  ``invalid_request``, ``unauthorized``, ``idempotency_key_reused``…). Retrying the same request will not help.

A void the carrier refuses because the parcel already moved is not an error but an answer:
``VoidResult(voided=False, reason="label_in_transit")``, which fulfillment reports to staff.

Retries: every call of the port is idempotent (rates and reads have no effect; buying and voiding carry an
``Idempotency-Key``), so each is retried here a few times with a short backoff on a retryable failure before
``CarrierError(retryable=True)`` reaches the caller. A request without that guarantee would not be retried.
The payments adapter uses no retry library, so neither does this one: the loop is ten lines.

Webhooks: ``Carrier-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with the webhook
secret; a timestamp further than ``WEBHOOK_TOLERANCE_SECONDS`` from now (either way) is refused, so an old,
validly signed message cannot be replayed. Several ``v1=`` values are accepted (secret rotation).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from services.fulfillment.carrier import (
    CarrierError,
    Label,
    Rate,
    RateRequest,
    Rates,
    TrackingUpdate,
    VoidResult,
)
from services.fulfillment.contracts.sandbox import SIGNATURE_HEADER, TRACKING_STATUSES

WEBHOOK_TOLERANCE_SECONDS = 5 * 60
RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5)
"""Pauses between the attempts of one call on a retryable failure (3 attempts in all)."""
MAX_RETRY_AFTER = 2.0
"""A carrier's ``Retry-After`` is honoured up to this many seconds (a worker must not hang longer)."""


# ---------------------------------------------------------------------------------------------------------
# Webhook signature
# ---------------------------------------------------------------------------------------------------------


def _bytes(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else body


def signature(secret: str, timestamp: int, body: str | bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` with ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + _bytes(body), hashlib.sha256).hexdigest()


def sign_webhook(secret: str, body: str | bytes, timestamp: int | None = None) -> str:
    """The ``Carrier-Signature`` header value for ``body``: ``t=<unix seconds>,v1=<hex>``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={signature(secret, ts, body)}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify_signature(
    secret: str,
    body: str | bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance: int = WEBHOOK_TOLERANCE_SECONDS,
) -> int:
    """Check the ``Carrier-Signature`` header against ``body``; return its timestamp.

    Raises ``CarrierError(code="bad_signature")`` if the header is missing or malformed, the timestamp is
    outside the tolerance window, or no ``v1`` value matches.
    """
    raw = _header(headers, SIGNATURE_HEADER)
    if not raw:
        raise CarrierError(f"missing {SIGNATURE_HEADER} header", code="bad_signature")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in raw.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise CarrierError(f"{SIGNATURE_HEADER}: t is not a whole number", code="bad_signature") from None
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise CarrierError(f"{SIGNATURE_HEADER} must be t=<unix seconds>,v1=<hex>", code="bad_signature")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise CarrierError(
            f"{SIGNATURE_HEADER} timestamp is outside the {tolerance} s tolerance window (stale or replayed)",
            code="bad_signature",
        )
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected.encode(), c.encode()) for c in candidates):
        raise CarrierError("no valid carrier webhook signature", code="bad_signature")
    return timestamp


def _parse_datetime(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise CarrierError(f"carrier sent no {name}", code="bad_payload")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CarrierError(f"carrier sent an invalid {name}: {value!r}", code="bad_payload") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_tracking_webhook(body: str | bytes) -> TrackingUpdate:
    """Decode a (verified) tracking webhook body into a ``TrackingUpdate``."""
    try:
        data = json.loads(body)
    except ValueError:
        raise CarrierError("carrier webhook body is not JSON", code="bad_payload") from None
    if not isinstance(data, dict) or data.get("type") != "tracking.updated":
        raise CarrierError("carrier webhook is not a tracking.updated event", code="bad_payload")
    carrier_status = data.get("status")
    if carrier_status not in TRACKING_STATUSES:
        raise CarrierError(f"carrier sent an unknown tracking status: {carrier_status!r}", code="bad_payload")
    if not data.get("id") or not data.get("tracking_number"):
        raise CarrierError("carrier webhook has no id or tracking_number", code="bad_payload")
    return TrackingUpdate(
        event_id=str(data["id"]),
        label_id=None if data.get("label_id") is None else str(data["label_id"]),
        tracking_number=str(data["tracking_number"]),
        status=TRACKING_STATUSES[carrier_status],
        carrier_status=carrier_status,
        description=data.get("description"),
        location=data.get("location"),
        occurred_at=_parse_datetime(data.get("occurred_at"), "occurred_at"),
        raw=data,
    )


# ---------------------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------------------


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, float | bool) or value is None:
        raise CarrierError(f"carrier sent {name} as {type(value).__name__}; amounts are strings", code="bad_payload")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise CarrierError(f"carrier sent an invalid {name}: {value!r}", code="bad_payload") from None
    if not result.is_finite():
        raise CarrierError(f"carrier sent an invalid {name}: {value!r}", code="bad_payload")
    return result


def _date(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(str(value))


def _json_party(party: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(party, default=str))  # dates/decimals inside an address as strings


class HttpCarrier:
    """``CarrierProvider`` over HTTP (sync ``httpx.Client``: Nameko workers run under eventlet, which makes the
    blocking socket cooperative). Connect and read timeouts turn a hung carrier into a retryable
    ``CarrierError`` instead of a stuck worker."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        webhook_secret: str,
        timeout: float = 10.0,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        webhook_tolerance: int = WEBHOOK_TOLERANCE_SECONDS,
        client: httpx.Client | None = None,
    ) -> None:
        if not webhook_secret:
            raise ValueError("the carrier webhook secret must not be empty")
        self.webhook_secret = webhook_secret
        self.webhook_tolerance = webhook_tolerance
        self.retry_delays = tuple(retry_delays)
        headers = {
            "Accept": "application/json",
            "User-Agent": "oms-fulfillment/0.1",
            "Authorization": f"Bearer {api_key}",
        }
        self._owns_client = client is None
        if client is None:
            client = httpx.Client(
                base_url=base_url, timeout=httpx.Timeout(timeout, connect=min(3.0, timeout)), headers=headers
            )
        else:
            client.headers.update(headers)
        self._client = client

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> HttpCarrier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send one idempotent request, retrying a retryable failure (same key each time); return a 2xx or a
        refusal (4xx other than 429). Raises ``CarrierError(retryable=True)`` when the attempts run out."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        failure = ""
        pause = 0.0
        for attempt in range(len(self.retry_delays) + 1):
            if attempt:
                time.sleep(pause)
            pause = self.retry_delays[attempt] if attempt < len(self.retry_delays) else 0.0
            try:
                response = self._client.request(method, path, json=json_body, headers=headers)
            except httpx.TransportError as exc:  # timeouts, refused connections, resets
                failure = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code >= 500 or response.status_code == 429:
                failure = f"HTTP {response.status_code} {_error_code(response) or ''}".strip()
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdigit():
                    pause = max(pause, min(float(retry_after), MAX_RETRY_AFTER))
                continue
            return response
        raise CarrierError(
            f"{method} {path}: carrier unavailable ({failure})", code="carrier_unavailable", retryable=True
        )

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        response = self._send(method, path, **kw)
        if response.status_code >= 400:
            raise _refusal(method, path, response)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise CarrierError(f"{method} {path}: HTTP {response.status_code} without a JSON object", retryable=True)
        return payload

    # -- the port --------------------------------------------------------------------------------------

    def rates(self, request: RateRequest) -> Rates:
        body: dict[str, Any] = {
            "shipper": _json_party(request.shipper),
            "recipient": _json_party(request.recipient),
            "packages": [_json_party(p) for p in request.packages],
            "currency": request.currency,
            "declared_value": None if request.declared_value is None else str(request.declared_value),
            "insurance": None if request.insurance is None else str(request.insurance),
            "signature_confirmation": request.signature_confirmation,
            "dangerous_goods": request.dangerous_goods,
            "drop_off_date": None if request.drop_off_date is None else request.drop_off_date.isoformat(),
        }
        data = self._json("POST", "/v1/rates", json_body=body)
        try:
            rates = [
                Rate(
                    rate_id=str(r["rate_id"]),
                    carrier=str(r["carrier"]),
                    service=str(r["service"]),
                    amount=_decimal(r["amount"], "amount"),
                    currency=str(r["currency"]),
                    estimated_delivery=_date(r.get("estimated_delivery")),
                    transit_days=None if r.get("transit_days") is None else int(r["transit_days"]),
                )
                for r in data["rates"]
            ]
            expires = data.get("expires_at")
            expires_at = None if expires is None else _parse_datetime(expires, "expires_at")
        except (KeyError, TypeError, ValueError) as exc:
            raise CarrierError(f"carrier sent rates of an unexpected shape: {exc}", code="bad_payload") from exc
        return Rates(rates=rates, expires_at=expires_at)

    def buy_label(self, rate_id: str, reference: str, idempotency_key: str) -> Label:
        if not idempotency_key:
            raise ValueError("buying a label needs an idempotency key")
        data = self._json(
            "POST",
            "/v1/labels",
            json_body={"rate_id": rate_id, "reference": reference},
            idempotency_key=idempotency_key,
        )
        try:
            return Label(
                label_id=str(data["label_id"]),
                tracking_number=str(data["tracking_number"]),
                tracking_url=data.get("tracking_url"),
                carrier=str(data["carrier"]),
                service=str(data["service"]),
                amount=_decimal(data["amount"], "amount"),
                currency=str(data["currency"]),
            )
        except KeyError as exc:
            raise CarrierError(f"carrier sent a label without {exc}", code="bad_payload") from exc

    def label_pdf(self, label_id: str) -> bytes:
        response = self._send("GET", f"/v1/labels/{label_id}/pdf")
        if response.status_code >= 400:
            raise _refusal("GET", f"/v1/labels/{label_id}/pdf", response)
        if not response.content.startswith(b"%PDF"):
            raise CarrierError(f"carrier sent label {label_id} but it is not a PDF", code="bad_payload")
        return response.content

    def void_label(self, label_id: str, idempotency_key: str) -> VoidResult:
        if not idempotency_key:
            raise ValueError("voiding a label needs an idempotency key")
        path = f"/v1/labels/{label_id}/void"
        response = self._send("POST", path, json_body={}, idempotency_key=idempotency_key)
        if response.status_code == 409:
            return VoidResult(voided=False, reason=_error_code(response) or "void_refused")
        if response.status_code >= 400:
            raise _refusal("POST", path, response)
        try:
            voided = bool(response.json().get("voided"))
        except (ValueError, AttributeError):
            raise CarrierError(f"POST {path}: answer without a JSON object", code="bad_payload") from None
        return VoidResult(voided=voided, reason=None if voided else "void_refused")

    def tracking(self, tracking_number: str) -> dict[str, Any]:
        """The carrier's tracking record (``{tracking_number, status, events}``); not part of the port, for
        reconciliation and tests."""
        return self._json("GET", f"/v1/tracking/{tracking_number}")

    def verify_webhook(
        self, body: str | bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> TrackingUpdate:
        """Verify the signature and timestamp of a tracking webhook, then decode it. Never returns data from an
        unverified body: a bad one raises ``CarrierError(code="bad_signature")``."""
        verify_signature(self.webhook_secret, body, headers, now=now, tolerance=self.webhook_tolerance)
        return parse_tracking_webhook(body)


def _error_code(response: httpx.Response) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return None if error.get("code") is None else str(error["code"])
    return None if error is None else str(error)


def _refusal(method: str, path: str, response: httpx.Response) -> CarrierError:
    code = _error_code(response) or f"http_{response.status_code}"
    message = code
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
    except (ValueError, AttributeError):
        pass
    return CarrierError(f"{method} {path}: HTTP {response.status_code} {code}: {message}", code=code)
