"""What every notifications use case does the same way: the channel ports together, the time, moving a
message's status (history + ``notification.message_status_changed.v1``), staff alerts, and reads."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from services.notifications import domain, store
from services.notifications.channels import EmailSender, SmsSender, WhatsAppSender
from services.notifications.contracts import events as ev
from services.notifications.contracts.vocabulary import MessageChannel, MessageStatus
from services.notifications.settings import NotificationSettings
from services.notifications.usecases.alerts import Raise, announce_alert, message_status, raise_alert, record_alerts
from shared import outbox
from shared.db import Database

log = logging.getLogger("services.notifications")

SERVICE = "notifications"
Tx = psycopg.Connection[Any]
SYSTEM_ACTOR = {"type": "system", "id": "notifications", "name": "Notifications"}


@dataclass
class Channels:
    """The three channel ports (``services.notifications.channels``): adapters in the service, fakes in tests."""

    email: EmailSender
    sms: SmsSender
    whatsapp: WhatsAppSender


def now() -> datetime:
    return datetime.now(UTC)


def actor_json(actor: Any) -> dict[str, Any]:
    if actor is None:
        return dict(SYSTEM_ACTOR)
    if hasattr(actor, "model_dump"):
        return dict(actor.model_dump(mode="json"))
    return dict(actor)


@contextmanager
def read(db: Database) -> Iterator[Tx]:
    """A connection for reads that need no transaction (autocommit)."""
    with db.pool.connection() as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            if not (conn.closed or conn.broken):
                conn.autocommit = False


def preferences(tx: Tx, settings: NotificationSettings) -> domain.Preferences:
    """The store's settings as they are now (read at each batch and each send: a change is effective at once)."""
    return store.load_preferences(tx)[0]


def store_email(prefs: domain.Preferences, settings: NotificationSettings) -> str:
    return prefs.store_email or settings.store_email


def test_recipient(prefs: domain.Preferences, settings: NotificationSettings) -> str:
    return prefs.test_recipient or store_email(prefs, settings)


def subject_of(message: dict[str, Any]) -> str:
    return str(message["order_id"]) if message.get("order_id") else "store"


def announce(tx: Tx, message: dict[str, Any], from_status: str | None, status: str, reason: str | None,
             at: datetime, source: str) -> None:
    """A status the message took: its history row, ``notification.message_status_changed.v1`` and, for a
    message about an order, a ``message_status`` staff alert (the order page shows it live; no one is e-mailed)."""
    store.add_history(tx, message["id"], from_status, status, reason, source, at)
    subject = subject_of(message)
    if message.get("order_id"):
        raise_alert(tx, message_status(message, domain.mask(message["recipient"]), from_status, status, reason),
                    order_id=message["order_id"], number=message.get("number"), test=bool(message.get("test")),
                    at=at, causation=f"{message['id']}:{status}")
    outbox.emit(tx, SERVICE, ev.MessageStatusChanged(
        message_id=message["id"], order_id=message.get("order_id"), number=message.get("number"),
        test=bool(message.get("test")), kind=message["kind"], channel=MessageChannel(message["channel"]),
        recipient=domain.mask(message["recipient"]),
        from_status=MessageStatus(from_status) if from_status else None, status=MessageStatus(status),
        reason=reason, at=at,
    ), subject=subject, correlation_id=subject, causation_id=str(message["id"]))




def announce_queued(tx: Tx, queued: list[tuple[dict[str, Any], datetime]], source: str) -> None:
    """``announce`` of ``None -> queued`` for many new (message, at), with one round trip per kind of row
    (history, alerts); the events are emitted in the order ``announce`` would, message after message."""
    store.add_history_many(tx, [(m["id"], None, "queued", None, source, at) for m, at in queued])
    about_order = [(m, at) for m, at in queued if m.get("order_id")]
    raises = [Raise(message_status(m, domain.mask(m["recipient"]), None, "queued", None), order_id=m["order_id"],
                    number=m.get("number"), test=bool(m.get("test")), at=at, causation=f"{m['id']}:queued")
              for m, at in about_order]
    alert_rows = dict(zip((m["id"] for m, _ in about_order), zip(raises, record_alerts(tx, raises), strict=True),
                          strict=True))
    for message, at in queued:
        r, row = alert_rows.get(message["id"], (None, None))
        if r is not None and row is not None:
            announce_alert(tx, r, row)
        subject = subject_of(message)
        outbox.emit(tx, SERVICE, ev.MessageStatusChanged(
            message_id=message["id"], order_id=message.get("order_id"), number=message.get("number"),
            test=bool(message.get("test")), kind=message["kind"], channel=MessageChannel(message["channel"]),
            recipient=domain.mask(message["recipient"]), from_status=None, status=MessageStatus.queued,
            reason=None, at=at,
        ), subject=subject, correlation_id=subject, causation_id=str(message["id"]))
