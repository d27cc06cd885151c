"""The notifications contract: RPC/HTTP bodies and views.

RPC methods of ``notifications``:

* ``list_templates(kind=None, channel=None, language=None) -> TemplateList``
* ``save_template(command: TemplateIn, actor) -> TemplateView`` (validated: syntax and variables)
* ``reset_template(kind, channel, language, actor) -> TemplateView`` (back to the shipped default)
* ``preview_template(command: PreviewRequest) -> PreviewView`` (with a real order the service knows)
* ``get_settings() -> NotificationSettingsView`` / ``update_settings(command: UpdateSettings, actor)``
* ``list_messages(order_id=None, status=None, channel=None, limit=50, after=None) -> MessageList``
* ``get_message(message_id) -> MessageView`` / ``resend_message(message_id, actor) -> MessageView``
* ``alerts_after(after_id=0, kinds=None, limit=100) -> AlertList`` (the gateway's SSE stream reads this)
* ``timeline(order_id) -> Timeline``
* ``handle_provider_webhook(provider, body, headers, url) -> WebhookAck`` (``provider``: ``sms``|``whatsapp``)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.notifications.contracts.vocabulary import AlertKind, MessageChannel, MessageStatus

Language = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]
KindName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TemplateIn(_Command):
    """A template for one kind x channel x language. ``subject`` and ``html`` are for e-mail; ``text`` is the
    plain part (e-mail), the SMS, or the WhatsApp free text; ``whatsapp_template`` names the provider-approved
    template used outside the 24-hour window, with its parameters as expressions of the same variables."""

    kind: KindName
    channel: MessageChannel
    language: Language = "en"
    subject: Annotated[str, StringConstraints(max_length=300)] | None = None
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    html: Annotated[str, StringConstraints(max_length=100_000)] | None = None
    whatsapp_template: Annotated[str, StringConstraints(max_length=100)] | None = None
    whatsapp_params: list[Annotated[str, StringConstraints(max_length=500)]] = Field(default_factory=list)


class TemplateView(_View):
    kind: str
    channel: MessageChannel
    language: str
    subject: str | None = None
    text: str
    html: str | None = None
    whatsapp_template: str | None = None
    whatsapp_params: list[str] = Field(default_factory=list)
    is_default: bool
    variables: list[str]
    updated_at: datetime | None = None


class TemplateList(_View):
    items: list[TemplateView]


class PreviewRequest(_Command):
    kind: KindName
    channel: MessageChannel
    language: Language = "en"
    order_id: UUID
    draft: TemplateIn | None = None  # preview unsaved text; otherwise the stored template


class PreviewView(_View):
    subject: str | None = None
    text: str
    html: str | None = None
    recipient: str | None = None


class KindSetting(_Command):
    kind: KindName
    enabled: bool = True
    channels: list[MessageChannel] | Literal["auto"] = "auto"  # auto: by the order's channel, with fallback
    stages: list[str] | None = None  # order_stage_changed only: which stages notify (None: the defaults)


class UpdateSettings(_Command):
    kinds: list[KindSetting] = Field(default_factory=list)
    language: Language | None = None  # the store's default language
    store_email: Annotated[str, StringConstraints(max_length=200)] | None = None  # new-order e-mails
    test_recipient: Annotated[str, StringConstraints(max_length=200)] | None = None  # test orders go here


class NotificationSettingsView(_View):
    kinds: list[dict[str, Any]]
    language: str
    store_email: str | None = None
    test_recipient: str | None = None
    updated_at: datetime | None = None


class MessageView(_View):
    id: UUID
    order_id: UUID | None = None
    order_number: int | None = None
    kind: str
    channel: MessageChannel
    recipient: str
    language: str
    status: MessageStatus
    attempts: int
    provider_message_id: str | None = None
    reason: str | None = None
    test: bool
    redirected: bool  # a test order's message went to the test recipient, not the customer
    subject: str | None = None
    text: str
    created_at: datetime
    updated_at: datetime
    history: list[dict[str, Any]] = Field(default_factory=list)


class MessageList(_View):
    items: list[MessageView]
    next_after: str | None = None


class AlertView(_View):
    id: int
    position: int
    """The alert's place in the live stream (the SSE ``id:``, what ``after`` and ``Last-Event-ID`` name). Given
    when the stream is read: alerts become visible in position order, never in a gap."""
    kind: AlertKind
    order_id: UUID | None = None
    number: int | None = None
    test: bool
    title: str
    text: str
    at: datetime


class AlertList(_View):
    items: list[AlertView]


class TimelineEntry(_View):
    at: datetime
    source: Literal["orders", "payments", "fulfillment", "notifications"]
    kind: str  # the event type, e.g. "order.stage_changed.v1", or "message.delivered"
    summary: str
    actor: dict[str, Any] | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Timeline(_View):
    order_id: UUID
    entries: list[TimelineEntry]


class WebhookAck(_View):
    received: bool = True
    applied: int = 0
