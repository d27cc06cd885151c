"""The notifications Nameko service: entrypoints only, each forwarding to its use case
(``services.notifications.usecases``); the RPC methods are those listed in ``contracts/schemas.py``.

Notifications listens to orders, payments and fulfillment (one batched subscription per source service), keeps
its copy of each order, queues customer messages and the new-order e-mail to the store, and sends them from a
sender thread (``dependencies.SenderProvider``); providers' receipts come in through ``handle_provider_webhook``.
"""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from services.notifications import usecases
from services.notifications.dependencies import ChannelsDependency, SenderProvider
from services.notifications.settings import get_settings
from services.notifications.usecases import alerts as alert_cases
from services.notifications.usecases import timeline as story
from shared.consumer import subscribe
from shared.db import Database
from shared.envelope import Envelope
from shared.errors import DomainError
from shared.nameko_ext import DatabaseProvider, OutboxRelayProvider

SERVICE = "notifications"
EVENT_BATCH_SIZE = 100
EVENT_BATCH_WAIT = 0.005  # seconds; a batch goes when full or this long after its first event


class NotificationsService:
    """Notifications: customer messages (e-mail, SMS, WhatsApp), templates, settings, receipts, staff alerts."""

    name = SERVICE
    db: Database = DatabaseProvider(SERVICE)  # type: ignore[assignment]
    relay = OutboxRelayProvider(SERVICE)
    channels: usecases.Channels = ChannelsDependency()  # type: ignore[assignment]
    sender = SenderProvider()

    @subscribe("orders", usecases.ORDER_EVENT_TYPES, batch_size=EVENT_BATCH_SIZE, batch_wait=EVENT_BATCH_WAIT)
    def on_order_events(self, batch: list[tuple[Envelope, Any]]) -> None:
        usecases.handle_events(self.db, get_settings(), "orders", [env for env, _data in batch])

    @subscribe("payments", usecases.PAYMENT_EVENT_TYPES, batch_size=EVENT_BATCH_SIZE, batch_wait=EVENT_BATCH_WAIT)
    def on_payment_events(self, batch: list[tuple[Envelope, Any]]) -> None:
        usecases.handle_events(self.db, get_settings(), "payments", [env for env, _data in batch])

    @subscribe("fulfillment", usecases.FULFILLMENT_EVENT_TYPES, batch_size=EVENT_BATCH_SIZE,
               batch_wait=EVENT_BATCH_WAIT)
    def on_fulfillment_events(self, batch: list[tuple[Envelope, Any]]) -> None:
        usecases.handle_events(self.db, get_settings(), "fulfillment", [env for env, _data in batch])

    @rpc(expected_exceptions=DomainError)
    def list_templates(self, kind: str | None = None, channel: str | None = None,
                       language: str | None = None) -> dict[str, Any]:
        return usecases.list_templates(self.db, kind, channel, language)

    @rpc(expected_exceptions=DomainError)
    def save_template(self, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.save_template(self.db, command, actor)

    @rpc(expected_exceptions=DomainError)
    def reset_template(self, kind: str, channel: str, language: str, actor: Any) -> dict[str, Any]:
        return usecases.reset_template(self.db, kind, channel, language, actor)

    @rpc(expected_exceptions=DomainError)
    def preview_template(self, command: Any) -> dict[str, Any]:
        return usecases.preview_template(self.db, get_settings(), command)

    @rpc(expected_exceptions=DomainError)
    def get_settings(self) -> dict[str, Any]:
        return usecases.get_settings(self.db, get_settings())

    @rpc(expected_exceptions=DomainError)
    def update_settings(self, command: Any, actor: Any) -> dict[str, Any]:
        return usecases.update_settings(self.db, get_settings(), command, actor)

    @rpc(expected_exceptions=DomainError)
    def list_messages(self, order_id: str | None = None, status: str | None = None, channel: str | None = None,
                      limit: int = 50, after: str | None = None) -> dict[str, Any]:
        return usecases.list_messages(self.db, order_id, status, channel, limit, after)

    @rpc(expected_exceptions=DomainError)
    def get_message(self, message_id: str) -> dict[str, Any]:
        return usecases.get_message(self.db, message_id)

    @rpc(expected_exceptions=DomainError)
    def resend_message(self, message_id: str, actor: Any) -> dict[str, Any]:
        return usecases.resend_message(self.db, message_id, actor)

    @rpc(expected_exceptions=DomainError)
    def handle_provider_webhook(self, provider: str, body: str, headers: dict[str, str], url: str) -> dict[str, Any]:
        return usecases.handle_provider_webhook(self.db, self.channels, get_settings(), provider, body, headers, url)

    # --- alerts and timeline ---
    # One subscription per source service, to EVERY event type of its contract: the timeline is the order's
    # whole story; the same batch raises the staff alerts (usecases.alerts.ALERT_RULES).

    @subscribe("timeline.orders", story.STORY_EVENT_TYPES["orders"], batch_size=EVENT_BATCH_SIZE,
               batch_wait=EVENT_BATCH_WAIT)
    def on_order_story(self, batch: list[tuple[Envelope, Any]]) -> None:
        story.handle_story_events(self.db, "orders", [env for env, _data in batch])

    @subscribe("timeline.payments", story.STORY_EVENT_TYPES["payments"], batch_size=EVENT_BATCH_SIZE,
               batch_wait=EVENT_BATCH_WAIT)
    def on_payment_story(self, batch: list[tuple[Envelope, Any]]) -> None:
        story.handle_story_events(self.db, "payments", [env for env, _data in batch])

    @subscribe("timeline.fulfillment", story.STORY_EVENT_TYPES["fulfillment"], batch_size=EVENT_BATCH_SIZE,
               batch_wait=EVENT_BATCH_WAIT)
    def on_fulfillment_story(self, batch: list[tuple[Envelope, Any]]) -> None:
        story.handle_story_events(self.db, "fulfillment", [env for env, _data in batch])

    @rpc(expected_exceptions=DomainError)
    def alerts_after(self, after_id: int = 0, kinds: Any = None, limit: int = 100) -> dict[str, Any]:
        return alert_cases.alerts_after(self.db, after_id, kinds, limit)

    @rpc(expected_exceptions=DomainError)
    def timeline(self, order_id: str) -> dict[str, Any]:
        return story.timeline(self.db, order_id)

    # --- end of alerts and timeline ---
