"""``HttpSms``: the ``SmsSender`` port over an SMS API shaped like Twilio's Messages resource
(``contracts/sandbox.py``), and the status callback signature both sides use.

Sending: a form POST to ``/2010-04-01/Accounts/{AccountSid}/Messages.json`` (To, From, Body, StatusCallback),
HTTP Basic ``<account_sid>:<auth_token>``, with the message's idempotency key as ``Idempotency-Key`` (the
provider answers the first message again for a key it has seen: a resend after a crash sends nothing).

Failure taxonomy (``ChannelError``): transport errors, timeouts, HTTP 5xx and 429 are ``retryable`` (code
``provider_unavailable``; the outcome is unknown, the retry carries the same key); any other refusal is
permanent: ``invalid_number`` (Twilio 21211 and its kin), ``unauthorized`` (401/403), ``sms_<code>`` otherwise.
One attempt per call: the service's sender loop owns retries and their backoff.

Status callbacks: a form body signed with ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth_token, url + each
parameter's name and value, sorted by name)). ``MessageStatus`` sent/delivered become those receipts,
undelivered/failed a ``failed`` one with the ``ErrorCode`` (and ``ErrorMessage`` when sent) as its reason;
interim statuses (queued, sending, accepted...) are not receipts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import httpx

from services.notifications.channels import ChannelError, Receipt, Sent, SmsSender
from services.notifications.channels._http import post_send
from services.notifications.contracts.sandbox import SMS_SIGNATURE_HEADER

RECEIPT_STATUSES: dict[str, str] = {
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "failed",
    "failed": "failed",
}
"""Provider MessageStatus -> the receipt's status; the statuses before ``sent`` are not receipts."""

INVALID_NUMBER_CODES = frozenset({21211, 21214, 21217, 21407, 21612, 21614})
"""Twilio errors that mean the number cannot receive this SMS (invalid, not mobile, unreachable region)."""

ERROR_TEXTS: dict[str, str] = {
    "30003": "Unreachable destination handset",
    "30004": "Message blocked",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Carrier violation (filtered)",
    "30008": "Unknown error",
}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def sms_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The ``X-Twilio-Signature`` of a callback to ``url`` with these form parameters."""
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_sms_signature(auth_token: str, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> None:
    """Raise ``ChannelError(code="bad_signature")`` unless the header signs ``url`` + ``params``."""
    given = _header(headers, SMS_SIGNATURE_HEADER)
    if not given:
        raise ChannelError(f"missing {SMS_SIGNATURE_HEADER} header", code="bad_signature")
    expected = sms_signature(auth_token, url, params)
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise ChannelError(f"{SMS_SIGNATURE_HEADER} does not match the callback", code="bad_signature")


def _error(response: httpx.Response) -> tuple[int | None, str]:
    """(provider error code, message) of a refusal body ``{code, message}``."""
    try:
        data: Any = response.json()
    except ValueError:
        return None, response.text[:200] or f"HTTP {response.status_code}"
    if not isinstance(data, dict):
        return None, f"HTTP {response.status_code}"
    code = data.get("code")
    return (code if isinstance(code, int) and not isinstance(code, bool) else None,
            str(data.get("message") or f"HTTP {response.status_code}"))


class HttpSms:
    """``SmsSender`` over HTTP (sync ``httpx.Client``; cooperative under eventlet)."""

    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        status_callback_url: str | None,
        timeout: float = 10.0,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        if not auth_token:
            raise ValueError("the SMS provider's auth token must not be empty")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.sender = sender
        self.status_callback_url = status_callback_url or None
        self._owns_client = client is None
        self._client = client or httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(3.0, timeout)),
            headers={"Accept": "application/json", "User-Agent": "oms-notifications/0.1"},
        )
        self._auth = httpx.BasicAuth(account_sid, auth_token)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> HttpSms:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, to: str, body: str, idempotency_key: str) -> Sent:
        if not idempotency_key:
            raise ValueError("an SMS needs an idempotency key")
        path = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        form = {"To": to, "From": self.sender, "Body": body}
        if self.status_callback_url:
            form["StatusCallback"] = self.status_callback_url
        response = post_send(self._client, path, idempotency_key, "SMS provider", lambda r: _error(r)[1],
                              data=form, auth=self._auth)
        if response.status_code >= 400:
            code, message = _error(response)
            if response.status_code in (401, 403):
                kind = "unauthorized"
            elif code in INVALID_NUMBER_CODES:
                kind = "invalid_number"
            else:
                kind = f"sms_{code}" if code is not None else f"http_{response.status_code}"
            raise ChannelError(f"SMS refused: {message}" + (f" ({code})" if code else ""), code=kind)
        try:
            sid = response.json()["sid"]
        except (ValueError, KeyError, TypeError):
            sid = None
        if not isinstance(sid, str) or not sid:
            # accepted (2xx) but unreadable: retrying with the same key gets the first message's answer again
            raise ChannelError(f"SMS provider answered HTTP {response.status_code} without a message sid",
                               code="bad_payload", retryable=True)
        return Sent(provider_message_id=sid)

    def parse_webhook(self, url: str, body: str, headers: dict[str, str]) -> list[Receipt]:
        pairs = parse_qsl(body, keep_blank_values=True)
        params = dict(pairs)
        verify_sms_signature(self.auth_token, url, params, headers)
        sid, provider_status = params.get("MessageSid"), params.get("MessageStatus")
        if not sid or not provider_status:
            raise ChannelError("status callback without MessageSid or MessageStatus", code="bad_payload")
        status = RECEIPT_STATUSES.get(provider_status)
        if status is None:
            return []
        reason = None
        if status == "failed":
            error_code = params.get("ErrorCode") or ""
            text = params.get("ErrorMessage") or ERROR_TEXTS.get(error_code) or provider_status
            reason = f"{text} ({error_code})" if error_code else text
        return [Receipt(provider_message_id=sid, status=status, at=datetime.now(UTC), reason=reason,
                        event_id=f"sms:{sid}:{provider_status}")]


if TYPE_CHECKING:  # mypy checks that HttpSms implements the port

    def _implements_the_port(sms: HttpSms) -> SmsSender:
        return sms
