"""The sender: claims due messages, renders them, calls the channel port with the idempotency key, records the
outcome. ``Sender`` runs it in a loop (a thread per process, started by ``dependencies.SenderProvider``).

* Claim: ``FOR UPDATE SKIP LOCKED`` on queued/retrying rows whose ``next_attempt_at`` has come, marked
  ``claimed_until`` (committed before any provider is called): two processes never send one row at once.
* Accepted: ``sent`` with the provider's message id. Retryable failure (unreachable, busy, 5xx): ``retrying``
  with exponential backoff and jitter, ``failed`` after ``OMS_NOTIFY_MAX_ATTEMPTS``. Permanent failure: ``failed``
  with the provider's reason, a ``message_failed`` staff alert, and the next channel of the plan (fallback).
* WhatsApp: free text inside the 24-hour window, the approved template outside; the provider's "outside the
  window" answer to free text is retried at once as the template.
* Crash window: after the provider accepted and before ``sent`` is recorded, a crash leaves the row claimed;
  once the claim runs out (``OMS_NOTIFY_CLAIM_TIMEOUT``) it is sent again with the SAME key: the SMS and
  WhatsApp providers answer the first message (no second one); SMTP has no idempotency, so the mail may go
  twice with the same Message-ID (mail clients show it once).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.notifications import domain, store, templating
from services.notifications.channels import ChannelError, Email, Sent
from services.notifications.contracts.sandbox import WHATSAPP_REENGAGEMENT_ERROR
from services.notifications.contracts.schemas import TemplateIn
from services.notifications.contracts.vocabulary import AlertKind, MessageChannel, MessageStatus
from services.notifications.settings import NotificationSettings
from services.notifications.usecases.alerts import Alert, raise_alert
from services.notifications.usecases.common import (
    Channels,
    Tx,
    announce,
    log,
    now,
    preferences,
    test_recipient,
)
from services.notifications.usecases.events import new_message
from shared import outbox
from shared.db import Database

OUTSIDE_WINDOW_CODES = frozenset({"outside_window", str(WHATSAPP_REENGAGEMENT_ERROR)})


@dataclass(frozen=True)
class Templates:
    """Where message text comes from: ``render`` and the shipped ``default_for`` (the templating module; tests
    may pass stand-ins)."""

    render: Callable[[TemplateIn, dict[str, Any]], templating.Rendered] = templating.render
    default_for: Callable[[str, str, str], TemplateIn] = templating.default_for


TEMPLATES = Templates()


def template_for(tx: Tx, templates: Templates, kind: str, channel: str, language: str) -> TemplateIn:
    """The stored override of (kind, channel, language), else of (kind, channel, base language), else the
    shipped default."""
    for lang in dict.fromkeys((language, language.split("-")[0])):
        row = store.get_template(tx, kind, channel, lang)
        if row is not None:
            return template_of_row(row)
    return templates.default_for(kind, channel, language)


def template_of_row(row: Mapping[str, Any]) -> TemplateIn:
    return TemplateIn.model_validate({k: row[k] for k in (
        "kind", "channel", "language", "subject", "text", "html", "whatsapp_template", "whatsapp_params")})


def test_prefix(rendered: templating.Rendered, test: bool) -> templating.Rendered:
    """A test order's message says so: "[TEST] " before its subject and text."""
    if not test:
        return rendered
    return templating.Rendered(
        subject=f"[TEST] {rendered.subject}" if rendered.subject is not None else None,
        text=f"[TEST] {rendered.text}", html=rendered.html, whatsapp_template=rendered.whatsapp_template,
        whatsapp_params=list(rendered.whatsapp_params))


class Permanent(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def send_due(db: Database, channels: Channels, settings: NotificationSettings, *, at: datetime | None = None,
             limit: int = 20, templates: Templates = TEMPLATES, jitter: Callable[[], float] = random.random) -> int:
    """Claim and send the messages due at ``at`` (default: now); the number handled."""
    at = at or now()
    with db.transaction() as tx:
        rows = store.claim_due(tx, at, at + timedelta(seconds=settings.notify_claim_timeout), limit)
    found: dict[tuple[str, str, str], TemplateIn] = {}  # templates read once per round, not once per message
    for row in rows:
        try:
            send_one(db, channels, settings, row, at=at, templates=templates, jitter=jitter, found=found)
        except Exception:  # noqa: BLE001 - one bad row must not stop the others; its claim runs out, it is retried
            log.exception("sending message %s failed unexpectedly", row["id"])
    return len(rows)


def send_one(db: Database, channels: Channels, settings: NotificationSettings, row: dict[str, Any], *,
             at: datetime, templates: Templates = TEMPLATES, jitter: Callable[[], float] = random.random,
             found: dict[tuple[str, str, str], TemplateIn] | None = None) -> None:
    """Render, send and record one message. ``found``: the templates this round has read already."""
    found = {} if found is None else found
    key = (row["kind"], row["channel"], row["language"])
    try:
        last_inbound = None
        if key not in found or row["channel"] == "whatsapp":
            with db.transaction() as tx:
                if key not in found:
                    found[key] = template_for(tx, templates, *key)
                if row["channel"] == "whatsapp":
                    last_inbound = store.last_inbound(tx, row["recipient"])
        template = found[key]
        rendered = test_prefix(templates.render(template, dict(row["context"])), row["test"])
    except (KeyError, templating.RenderError) as exc:  # no template, or it does not fit: cannot get better
        record_failure(db, settings, row, ChannelError(f"template: {exc}", code="template"), at=at, jitter=jitter,
                       rendered=None)
        return
    try:
        sent = deliver(channels, row, rendered, domain.in_window(last_inbound, at))
    except ChannelError as exc:
        record_failure(db, settings, row, exc, at=at, jitter=jitter, rendered=rendered)
        return
    with db.transaction() as tx, outbox.buffered(tx):
        current = store.get_message(tx, row["id"], for_update=True)
        if current is None:
            return
        fields: dict[str, Any] = {"attempts": current["attempts"] + 1, "claimed_until": None,
                                  "provider_message_id": sent.provider_message_id, "subject": rendered.subject,
                                  "text": rendered.text, "html": rendered.html, "reason": None}
        moved = domain.can_move(current["status"], MessageStatus.sent)
        if moved:
            fields["status"] = MessageStatus.sent.value
        store.update_message(tx, row["id"], at, **fields)
        if moved:
            announce(tx, current, current["status"], MessageStatus.sent.value, None, at, "sender")


def deliver(channels: Channels, row: Mapping[str, Any], rendered: templating.Rendered, inside_window: bool) -> Sent:
    """Call the channel's port with the message's idempotency key."""
    key = str(row["idempotency_key"])
    channel = MessageChannel(row["channel"])
    if channel is MessageChannel.email:
        return channels.email.send(Email(
            to=row["recipient"], subject=rendered.subject or "", text=rendered.text, html=rendered.html,
            message_id=f"<{key}@oms>", headers={"X-OMS-Message-Id": str(row["id"]), "X-OMS-Kind": row["kind"]}))
    if channel is MessageChannel.sms:
        return channels.sms.send(row["recipient"], rendered.text, key)
    if inside_window:
        try:
            return channels.whatsapp.send_text(row["recipient"], rendered.text, key)
        except ChannelError as exc:
            if exc.code not in OUTSIDE_WINDOW_CODES:
                raise
            log.info("message %s: WhatsApp window closed, sending the template instead", row["id"])
    if not rendered.whatsapp_template:
        raise ChannelError("outside the 24-hour window and no approved template", code="no_template")
    # A different call than the free text: its own key, derived from the message's (idempotent on a re-send).
    return channels.whatsapp.send_template(row["recipient"], rendered.whatsapp_template, row["language"],
                                           list(rendered.whatsapp_params), f"{key}-t")


def record_failure(db: Database, settings: NotificationSettings, row: Mapping[str, Any], exc: ChannelError, *,
                   at: datetime, jitter: Callable[[], float], rendered: templating.Rendered | None) -> None:
    reason = f"{exc.code}: {exc.reason}" if exc.code not in ("error", "") else exc.reason
    with db.transaction() as tx, outbox.buffered(tx):
        current = store.get_message(tx, row["id"], for_update=True)
        if current is None or current["status"] not in ("queued", "retrying"):
            return
        attempts = current["attempts"] + 1
        content = ({"subject": rendered.subject, "text": rendered.text, "html": rendered.html} if rendered else {})
        if exc.retryable and attempts < settings.notify_max_attempts:
            delay = domain.backoff(attempts, settings.notify_retry_base, jitter())
            store.update_message(tx, row["id"], at, status=MessageStatus.retrying.value, attempts=attempts,
                                 next_attempt_at=at + delay, claimed_until=None, reason=reason, **content)
            if current["status"] != MessageStatus.retrying.value:
                announce(tx, current, current["status"], MessageStatus.retrying.value, reason, at, "sender")
            return
        if exc.retryable:
            reason = f"gave up after {attempts} attempts: {reason}"
        store.update_message(tx, row["id"], at, status=MessageStatus.failed.value, attempts=attempts,
                             claimed_until=None, reason=reason, **content)
        announce(tx, current, current["status"], MessageStatus.failed.value, reason, at, "sender")
        failed(tx, settings, current, reason, at)


def failed(tx: Tx, settings: NotificationSettings, message: Mapping[str, Any], reason: str, at: datetime) -> None:
    """A message that cannot be delivered: a staff alert, and the next channel of its plan (a new message linked
    ``fallback_of``), if the customer has one left."""
    number = message.get("number")
    what = f"order #{number}" if number else "the store"
    raise_alert(tx, Alert(AlertKind.message_failed, f"Message to {domain.mask(message['recipient'])} failed",
                          f"The {message['kind'].replace('_', ' ')} {message['channel']} message for {what} could "
                          f"not be delivered: {reason}"),
                order_id=message.get("order_id"), number=number, test=bool(message.get("test")), at=at,
                causation=str(message["id"]))
    fallback(tx, settings, message)


def fallback(tx: Tx, settings: NotificationSettings, message: Mapping[str, Any]) -> dict[str, Any] | None:
    if message["kind"] == domain.STAFF_KIND or message.get("order_id") is None:
        return None
    order = store.get_order(tx, message["order_id"])
    if order is None:
        return None
    prefs = preferences(tx, settings)
    customer = order["customer"] or {}
    plan = domain.channel_plan(order["channel"], customer.get("phone"), customer.get("email"),
                               prefs.kind(message["kind"]).channels)
    root = message.get("event_id") or message["id"]
    tried = {m["channel"] for m in store.messages_of_event(tx, message.get("event_id"), message["kind"])}
    tried.add(message["channel"])
    nxt = domain.next_channel(plan, tried)
    while nxt is not None:
        r = domain.route(nxt[0], nxt[1], test=bool(order["test"]), test_recipient=test_recipient(prefs, settings),
                         sandbox_channels=settings.sandbox_channels())
        if r is not None and r.channel.value not in tried:
            return new_message(tx, str(root), message["kind"], r, message["language"], order,
                               message["context"], fallback_of=message["id"])
        tried.add(nxt[0].value)
        nxt = domain.next_channel(plan, tried)
    return None


class Sender:
    """The sender loop: ``run`` until ``stop``; sends what is due, then waits ``OMS_NOTIFY_POLL_INTERVAL``."""

    def __init__(self, db: Database, channels: Channels, settings: NotificationSettings,
                 templates: Templates = TEMPLATES) -> None:
        self.db = db
        self.channels = channels
        self.settings = settings
        self.templates = templates
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                handled = send_due(self.db, self.channels, self.settings, templates=self.templates)
            except Exception:  # noqa: BLE001 - the database is down: wait and try again
                log.exception("message sender round failed")
                handled = 0
            if not handled:
                self._stopped.wait(self.settings.notify_poll_interval)
