"""What every notifications use case does the same way: the channel ports together, the time, moving a
message's status (history + ``notification.message_status_changed.v1``), staff alerts, and reads."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from services.notifications import domain, store
from services.notifications.channels import EmailSender, SmsSender, WhatsAppSender
from services.notifications.contracts import events as ev
from services.notifications.contracts.vocabulary import MessageChannel, MessageStatus
from services.notifications.settings import NotificationSettings
from services.notifications.usecases.alerts import buffered as alerts_buffered
from services.notifications.usecases.alerts import message_status, raise_alert
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


# What a consumer's batch transaction keeps until its end (``batch_writes``), keyed by the connection.
@dataclass
class _Batch:
    history: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    copies: dict[str, dict[str, Any]] = field(default_factory=dict)  # order copies written at the batch's start
    prefs: domain.Preferences | None = None


_batches: weakref.WeakKeyDictionary[Tx, _Batch] = weakref.WeakKeyDictionary()


@contextmanager
def batch_writes(tx: Tx) -> Iterator[None]:
    """The end of a consumer batch's transaction: the store's settings are read once for the batch, and the
    new messages, their history rows and the staff alerts (``alerts.buffered``) it makes are written at the end,
    a statement (or one pipelined round trip) for each kind instead of one per row. Enter inside
    ``outbox.buffered``, so the events go with the batch's.

    Only for consumers: the inbox has made sure each event is applied once, so a new message's row (keyed by
    event, kind, channel and recipient) cannot exist yet and needs no answer from the database before it is
    announced. (The sender records a round inside it too: it makes fallback messages only, which
    ``events.new_message`` inserts at once.)"""
    if tx in _batches:
        yield
        return
    batch = _Batch()
    _batches[tx] = batch
    try:
        with alerts_buffered(tx):
            yield
            store.insert_messages(tx, batch.messages)
            store.add_histories(tx, batch.history)
    finally:
        _batches.pop(tx, None)


def batch_of(tx: Tx) -> _Batch | None:
    """The batch this transaction is writing (``batch_writes``), if any."""
    return _batches.get(tx)


def preferences(tx: Tx, settings: NotificationSettings) -> domain.Preferences:
    """The store's settings as they are now (read at each batch and each send: a change is effective at once)."""
    batch = _batches.get(tx)
    if batch is None:
        return store.load_preferences(tx)[0]
    if batch.prefs is None:
        batch.prefs = store.load_preferences(tx)[0]
    return batch.prefs


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
    batch = _batches.get(tx)
    if batch is None:
        store.add_history(tx, message["id"], from_status, status, reason, source, at)
    else:
        batch.history.append((message["id"], from_status, status, reason, source, at))
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


