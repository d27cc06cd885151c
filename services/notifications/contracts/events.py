"""Events the notifications service publishes (subject: the order id; ``store`` for alerts about no order)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from services.notifications.contracts.vocabulary import AlertKind, MessageChannel, MessageStatus
from shared.envelope import EventModel


class MessageStatusChanged(EventModel):
    """A customer message moved: queued, sent, delivered, read, failed or retrying (with the provider's reason)."""

    event_type: ClassVar[str] = "notification.message_status_changed.v1"

    message_id: UUID
    order_id: UUID | None = None
    number: int | None = None
    test: bool = False
    kind: str
    channel: MessageChannel
    recipient: str  # masked: "+2165•••••12", "a•••@example.com"
    from_status: MessageStatus | None = None
    status: MessageStatus
    reason: str | None = None
    at: datetime


class AlertRaised(EventModel):
    """A staff alert (also on the live stream ``GET /api/v1/alerts/stream``)."""

    event_type: ClassVar[str] = "notification.alert_raised.v1"

    alert_id: int
    kind: AlertKind
    order_id: UUID | None = None
    number: int | None = None
    test: bool = False
    title: str
    text: str
    at: datetime


NOTIFICATION_EVENTS: tuple[type[EventModel], ...] = (MessageStatusChanged, AlertRaised)
