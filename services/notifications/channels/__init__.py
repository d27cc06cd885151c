"""The channel ports: what the notification use cases ask of a mail server and of the messaging providers.

Adapters: ``channels.smtp.SmtpSender`` (e-mail over SMTP, multipart text + HTML), ``channels.sms.HttpSms``
(the SMS API shaped like Twilio's Messages resource), ``channels.whatsapp.HttpWhatsApp`` (WhatsApp Business
Cloud API). ``provider.sandbox`` is the sandbox messaging provider speaking both HTTP APIs. Use-case tests use
in-memory fakes of these ports (``tests/fakes.py``); adapter tests run against aiosmtpd and the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class ChannelError(Exception):
    """Sending failed. ``retryable``: the server or provider was unreachable or busy (retry with backoff);
    otherwise the message itself was refused (``code``/``reason`` say why: bad number, outside the WhatsApp
    window, ...) and retrying it unchanged cannot help."""

    def __init__(self, reason: str, *, code: str = "error", retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class Sent:
    provider_message_id: str  # SMTP: the Message-ID header; SMS: the sid; WhatsApp: the wamid


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    html: str | None
    message_id: str  # derived from the idempotency key: a resend after a crash carries the same Message-ID
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt from a provider: the provider's message id and what happened (a MessageStatus)."""

    provider_message_id: str
    status: str  # sent | delivered | read | failed
    at: datetime
    reason: str | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class Inbound:
    """A message from a customer (WhatsApp): opens the 24-hour customer-service window for that number."""

    from_number: str
    provider_message_id: str
    text: str
    at: datetime


class EmailSender(Protocol):
    def send(self, email: Email) -> Sent: ...


class SmsSender(Protocol):
    def send(self, to: str, body: str, idempotency_key: str) -> Sent: ...

    def parse_webhook(self, url: str, body: str, headers: dict[str, str]) -> list[Receipt]:
        """Verify the signature (``ChannelError`` code ``bad_signature``) and read the receipts."""
        ...


class WhatsAppSender(Protocol):
    def send_text(self, to: str, body: str, idempotency_key: str) -> Sent: ...

    def send_template(self, to: str, template: str, language: str, params: list[str],
                      idempotency_key: str) -> Sent: ...

    def parse_webhook(self, body: str, headers: dict[str, str]) -> tuple[list[Receipt], list[Inbound]]: ...
