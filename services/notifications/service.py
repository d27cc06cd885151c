"""The notifications Nameko service: entrypoints only, each forwarding to its use case
(``services.notifications.usecases``); the RPC methods are those listed in ``contracts/schemas.py``.

MINIMAL version from branch h-nalerts (N-core builds the real one): only the alerts and timeline block. When
merging, keep N-core's class and copy the block marked ``# --- alerts and timeline ---`` into it.
"""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

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
    """Notifications: customer messages and their delivery status, staff alerts, the order timeline."""

    name = SERVICE
    db: Database = DatabaseProvider(SERVICE)  # type: ignore[assignment]
    relay = OutboxRelayProvider(SERVICE)

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
