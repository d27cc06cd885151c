"""``HttpWhatsApp``: the ``WhatsAppSender`` port over the WhatsApp Business Cloud API (``contracts/sandbox.py``),
and the webhook signature both sides use.

Sending: ``POST /v19.0/{phone_number_id}/messages`` (JSON, ``Authorization: Bearer <access_token>``) with a
free-text or a template message and the message's idempotency key as ``Idempotency-Key``.

Failure taxonomy (``ChannelError``): transport errors, timeouts, HTTP 5xx and 429 are ``retryable``
(``provider_unavailable``); error 131047 (free text outside the 24-hour customer-service window) is
``outside_window`` (permanent: the caller sends the template message instead, at once); 401/403 are
``unauthorized``; any other refusal ``whatsapp_<code>``. One attempt per call: the sender loop owns retries.

Webhooks: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>``. Statuses (sent, delivered,
read, failed) become ``Receipt``s (a failed one with its errors' code and title as reason), inbound messages
``Inbound``s with the sender as ``+<digits>`` (the Cloud API sends the wa_id, digits only).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from services.notifications.channels import ChannelError, Inbound, Receipt, Sent, WhatsAppSender
from services.notifications.channels._http import post_send
from services.notifications.contracts.sandbox import WHATSAPP_REENGAGEMENT_ERROR, WHATSAPP_SIGNATURE_HEADER

API_VERSION = "v19.0"
RECEIPT_STATUSES = frozenset({"sent", "delivered", "read", "failed"})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _bytes(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else body


def whatsapp_signature(app_secret: str, body: str | bytes) -> str:
    """The ``X-Hub-Signature-256`` header value of ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(app_secret.encode(), _bytes(body), hashlib.sha256).hexdigest()


def verify_whatsapp_signature(app_secret: str, body: str | bytes, headers: Mapping[str, str]) -> None:
    """Raise ``ChannelError(code="bad_signature")`` unless the header signs the raw ``body``."""
    given = _header(headers, WHATSAPP_SIGNATURE_HEADER)
    if not given:
        raise ChannelError(f"missing {WHATSAPP_SIGNATURE_HEADER} header", code="bad_signature")
    if not hmac.compare_digest(whatsapp_signature(app_secret, body).encode(), given.strip().encode()):
        raise ChannelError(f"{WHATSAPP_SIGNATURE_HEADER} does not match the body", code="bad_signature")


def wa_number(number: str) -> str:
    """A phone number as the Cloud API's ``to``/wa_id: its digits (``+216 20 123 456`` -> ``21620123456``)."""
    return "".join(ch for ch in number if ch.isdigit())


def _moment(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return datetime.now(UTC)


def _error(response: httpx.Response) -> tuple[int | None, str]:
    try:
        data: Any = response.json()
    except ValueError:
        return None, response.text[:200] or f"HTTP {response.status_code}"
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, f"HTTP {response.status_code}"
    code = error.get("code")
    message = str(error.get("message") or f"HTTP {response.status_code}")
    details = error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), dict) else None
    if details:
        message = f"{message}: {details}"
    return (code if isinstance(code, int) and not isinstance(code, bool) else None), message


class HttpWhatsApp:
    """``WhatsAppSender`` over HTTP (sync ``httpx.Client``; cooperative under eventlet)."""

    def __init__(
        self,
        base_url: str,
        phone_number_id: str,
        access_token: str,
        app_secret: str,
        timeout: float = 10.0,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        if not app_secret:
            raise ValueError("the WhatsApp app secret must not be empty")
        self.phone_number_id = phone_number_id
        self.app_secret = app_secret
        headers = {"Accept": "application/json", "User-Agent": "oms-notifications/0.1",
                   "Authorization": f"Bearer {access_token}"}
        self._owns_client = client is None
        if client is None:
            client = httpx.Client(base_url=base_url.rstrip("/"),
                                  timeout=httpx.Timeout(timeout, connect=min(3.0, timeout)), headers=headers)
        else:
            client.headers.update(headers)
        self._client = client

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> HttpWhatsApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, message: dict[str, Any], idempotency_key: str) -> Sent:
        if not idempotency_key:
            raise ValueError("a WhatsApp message needs an idempotency key")
        path = f"/{API_VERSION}/{self.phone_number_id}/messages"
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", **message}
        response = post_send(self._client, path, idempotency_key, "WhatsApp", lambda r: _error(r)[1], json=body)
        if response.status_code >= 400:
            code, text = _error(response)
            if code == WHATSAPP_REENGAGEMENT_ERROR:
                kind = "outside_window"
            elif response.status_code in (401, 403):
                kind = "unauthorized"
            else:
                kind = f"whatsapp_{code}" if code is not None else f"http_{response.status_code}"
            raise ChannelError(f"WhatsApp refused: {text}" + (f" ({code})" if code else ""), code=kind)
        try:
            wamid = response.json()["messages"][0]["id"]
        except (ValueError, KeyError, IndexError, TypeError):
            wamid = None
        if not isinstance(wamid, str) or not wamid:
            raise ChannelError(f"WhatsApp answered HTTP {response.status_code} without a message id",
                               code="bad_payload", retryable=True)
        return Sent(provider_message_id=wamid)

    def send_text(self, to: str, body: str, idempotency_key: str) -> Sent:
        return self._send({"to": wa_number(to), "type": "text", "text": {"preview_url": False, "body": body}},
                          idempotency_key)

    def send_template(self, to: str, template: str, language: str, params: list[str],
                      idempotency_key: str) -> Sent:
        components = [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}] if params else []
        return self._send(
            {"to": wa_number(to), "type": "template",
             "template": {"name": template, "language": {"code": language}, "components": components}},
            idempotency_key,
        )

    def parse_webhook(self, body: str, headers: dict[str, str]) -> tuple[list[Receipt], list[Inbound]]:
        verify_whatsapp_signature(self.app_secret, body, headers)
        try:
            data = json.loads(body)
        except ValueError:
            raise ChannelError("WhatsApp webhook body is not JSON", code="bad_payload") from None
        if not isinstance(data, dict):
            raise ChannelError("WhatsApp webhook body is not an object", code="bad_payload")
        receipts: list[Receipt] = []
        inbound: list[Inbound] = []
        try:
            for entry in data.get("entry") or []:
                for change in entry.get("changes") or []:
                    if change.get("field") != "messages":
                        continue
                    value = change.get("value") or {}
                    for st in value.get("statuses") or []:
                        status = st.get("status")
                        if status not in RECEIPT_STATUSES or not st.get("id"):
                            continue
                        reason = None
                        if status == "failed":
                            errors = st.get("errors") or [{}]
                            first = errors[0] if isinstance(errors[0], dict) else {}
                            title = first.get("title") or first.get("message") or "failed"
                            reason = f"{title} ({first['code']})" if first.get("code") is not None else str(title)
                        receipts.append(Receipt(
                            provider_message_id=str(st["id"]), status=status, at=_moment(st.get("timestamp")),
                            reason=reason, event_id=f"wa:{st['id']}:{status}",
                        ))
                    for msg in value.get("messages") or []:
                        if not msg.get("from") or not msg.get("id"):
                            continue
                        if msg.get("type") == "text":
                            text = str((msg.get("text") or {}).get("body") or "")
                        else:
                            text = f"[{msg.get('type') or 'message'}]"
                        inbound.append(Inbound(from_number="+" + wa_number(str(msg["from"])),
                                               provider_message_id=str(msg["id"]), text=text,
                                               at=_moment(msg.get("timestamp"))))
        except (AttributeError, TypeError, IndexError) as exc:
            raise ChannelError(f"WhatsApp webhook of an unexpected shape: {exc}", code="bad_payload") from exc
        return receipts, inbound


if TYPE_CHECKING:  # mypy checks that HttpWhatsApp implements the port

    def _implements_the_port(whatsapp: HttpWhatsApp) -> WhatsAppSender:
        return whatsapp
