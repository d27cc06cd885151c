"""The sender: claims due messages, renders them, calls the channel port with the idempotency key, records the
outcomes. ``Sender`` runs it in a loop (a thread per process, started by ``dependencies.SenderProvider``).

* Claim: ``FOR UPDATE SKIP LOCKED`` on queued/retrying rows whose ``next_attempt_at`` has come, marked
  ``claimed_until`` (committed before any provider is called): two processes never send one row at once.
* A round: up to ``ROUND_LIMIT`` (20) claimed messages are rendered (their templates and WhatsApp windows read
  in one transaction) and sent one after the other; then their outcomes are recorded in ONE transaction that
  locks the round's rows at once and applies each outcome by the rules below, with one UPDATE, and the history
  rows, alerts and events written set-based (``common.batch_writes``). Recording each message in its own
  transaction cost a round trip per statement and a commit per message.
* Accepted: ``sent`` with the provider's message id (a message whose row changed meanwhile, e.g. cancelled,
  keeps its status: ``domain.can_move``). Retryable failure (unreachable, busy, 5xx): ``retrying`` with
  exponential backoff and jitter, ``failed`` after ``OMS_NOTIFY_MAX_ATTEMPTS``. Permanent failure: ``failed``
  with the provider's reason, a ``message_failed`` staff alert, and the next channel of the plan (fallback). A
  failure of a message that is no longer queued/retrying changes nothing.
* WhatsApp: free text inside the 24-hour window, the approved template outside; the provider's "outside the
  window" answer to free text is retried at once as the template.
* Crash window: after a provider accepted a message and before its round is recorded, a crash (or a record
  transaction that fails: the database went away) leaves the round's rows claimed; once the claims run out
  (``OMS_NOTIFY_CLAIM_TIMEOUT``) they are sent again with the SAME keys: the SMS and WhatsApp providers answer
  the first message (no second one); SMTP has no idempotency, so a mail may go twice with the same Message-ID
  (mail clients show it once). Recording per round widens this from the one message being sent to the round's
  messages already sent: at most ``ROUND_LIMIT``, which is why rounds stay small (20 sends are tens of
  milliseconds over a kept SMTP connection). A round must also be recorded while its claims hold, or another
  process may claim and send its messages again: once half the claim timeout has passed (a server that hangs
  until each send times out) a round sends no more and releases the rest of its claims.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
    batch_writes,
    log,
    now,
    preferences,
    test_recipient,
)
from services.notifications.usecases.events import new_message
from shared import outbox
from shared.db import Database

ROUND_LIMIT = 20
"""Messages claimed, sent and then recorded together (see the module docstring: the crash window)."""

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


@dataclass
class Outcome:
    """What became of one claimed message this round: ``sent``, or ``error`` (a refusal, an outage, or a template
    that does not fit: ``rendered`` is None then)."""

    row: dict[str, Any]
    rendered: templating.Rendered | None
    sent: Sent | None = None
    error: ChannelError | None = None


def send_due(db: Database, channels: Channels, settings: NotificationSettings, *, at: datetime | None = None,
             limit: int = ROUND_LIMIT, templates: Templates = TEMPLATES, jitter: Callable[[], float] = random.random,
             clock: Callable[[], float] = time.monotonic) -> int:
    """Claim and send the messages due at ``at`` (default: now), then record the round; the number claimed.
    If the record fails (the database went away), this raises: the round's claims run out and it is sent again
    with the same keys. A round that has taken half the claim timeout (a server that hangs until each send
    times out) sends no more: the rest are released, due again at once, so every send is recorded while its
    claim holds (no other process may claim it and send it again meanwhile)."""
    at = at or now()
    until = at + timedelta(seconds=settings.notify_claim_timeout)
    with db.transaction() as tx:
        rows = store.claim_due(tx, at, until, limit)
    if not rows:
        return 0
    started = clock()
    outcomes = []
    unsent = []
    for row, ready in zip(rows, prepare(db, rows, templates, at), strict=True):
        if clock() - started > settings.notify_claim_timeout / 2:
            unsent.append(row["id"])
            continue
        try:
            if isinstance(ready, ChannelError):
                outcomes.append(Outcome(row, None, error=ready))
                continue
            if ready is None:  # logged by ``prepare``
                continue
            rendered, inside_window = ready
            try:
                outcomes.append(Outcome(row, rendered, sent=deliver(channels, row, rendered, inside_window)))
            except ChannelError as exc:
                outcomes.append(Outcome(row, rendered, error=exc))
        except Exception:  # noqa: BLE001 - one bad row must not stop the others; its claim runs out, it is retried
            log.exception("sending message %s failed unexpectedly", row["id"])
    record(db, settings, outcomes, at=at, jitter=jitter, unsent=unsent, until=until)
    return len(rows)


Ready = tuple[templating.Rendered, bool] | ChannelError | None


def prepare(db: Database, rows: list[dict[str, Any]], templates: Templates, at: datetime) -> list[Ready]:
    """Each claimed message rendered, with whether its WhatsApp window is open; a template failure (none, or it
    does not fit: cannot get better) as its ``ChannelError``; None for a row that failed unexpectedly (logged;
    its claim runs out). The round's templates and windows are read in one transaction, each once."""
    found: dict[tuple[str, str, str], TemplateIn | Exception] = {}
    windows: dict[str, datetime | None] = {}
    with db.transaction() as tx:
        for row in rows:
            key = (row["kind"], row["channel"], row["language"])
            if key not in found:
                try:
                    found[key] = template_for(tx, templates, *key)
                except (KeyError, templating.RenderError) as exc:
                    found[key] = exc
            if row["channel"] == "whatsapp" and row["recipient"] not in windows:
                windows[row["recipient"]] = store.last_inbound(tx, row["recipient"])
    ready: list[Ready] = []
    for row in rows:
        template = found[(row["kind"], row["channel"], row["language"])]
        try:
            if isinstance(template, Exception):
                raise template
            rendered = test_prefix(templates.render(template, dict(row["context"])), row["test"])
            ready.append((rendered, domain.in_window(windows.get(row["recipient"]), at)))
        except (KeyError, templating.RenderError) as exc:
            ready.append(ChannelError(f"template: {exc}", code="template"))
        except Exception:  # noqa: BLE001 - as in send_due: this row waits for its claim to run out
            log.exception("rendering message %s failed unexpectedly", row["id"])
            ready.append(None)
    return ready


def record(db: Database, settings: NotificationSettings, outcomes: list[Outcome], *, at: datetime,
           jitter: Callable[[], float], unsent: Sequence[Any] = (), until: datetime | None = None) -> None:
    """A round's outcomes in one transaction: the rows locked at once, each moved by the rules of a single send
    (below), their new values in one statement, history rows, alerts and events written set-based
    (``batch_writes``). ``unsent``: rows of the round not tried, whose claim (``until``) is released."""
    if not outcomes and not unsent:
        return
    with db.transaction() as tx, outbox.buffered(tx), batch_writes(tx):
        if unsent and until is not None:
            store.release_claims(tx, unsent, until)
        current = store.lock_messages(tx, [o.row["id"] for o in outcomes])
        rows: list[dict[str, Any]] = []
        after: list[tuple[dict[str, Any], str, str | None, bool]] = []  # message, new status, reason, failed
        for o in outcomes:
            cur = current.get(o.row["id"])
            if cur is None:
                continue
            moved = outcome_row(settings, cur, o, at, jitter)
            if moved is None:
                continue
            row, announced = moved
            rows.append(row)
            if announced:
                after.append((cur, row["status"], row["reason"], row["status"] == MessageStatus.failed.value))
        store.record_round(tx, at, rows)
        for message, status, reason, gave_up in after:
            announce(tx, message, message["status"], status, reason, at, "sender")
            if gave_up:
                failed(tx, settings, message, reason or "", at)


def outcome_row(settings: NotificationSettings, cur: dict[str, Any], o: Outcome, at: datetime,
                jitter: Callable[[], float]) -> tuple[dict[str, Any], bool] | None:
    """The message's new values after this outcome, and whether its status changed (announced); None: leave
    it as it is (a failure of a message that meanwhile left queued/retrying, e.g. cancelled).

    * sent: ``sent`` with the provider's id, if the status machine allows it (a message cancelled meanwhile
      keeps its status but records the send);
    * retryable failure: ``retrying`` with backoff, or ``failed`` ("gave up after N attempts") after the last;
    * permanent failure (or a template that does not fit): ``failed`` with the reason; the caller raises the
      staff alert and queues the fallback (``failed``)."""
    row = {c: cur[c] for c in ("id", "status", "next_attempt_at", "provider_message_id", "subject", "text", "html")}
    row["attempts"] = cur["attempts"] + 1
    if o.rendered is not None:
        row.update(subject=o.rendered.subject, text=o.rendered.text, html=o.rendered.html)
    if o.sent is not None:
        row.update(provider_message_id=o.sent.provider_message_id, reason=None)
        if not domain.can_move(cur["status"], MessageStatus.sent):
            return row, False
        row["status"] = MessageStatus.sent.value
        return row, True
    exc = o.error
    assert exc is not None
    if cur["status"] not in ("queued", "retrying"):
        return None
    reason = f"{exc.code}: {exc.reason}" if exc.code not in ("error", "") else exc.reason
    if exc.retryable and row["attempts"] < settings.notify_max_attempts:
        delay = domain.backoff(row["attempts"], settings.notify_retry_base, jitter())
        row.update(status=MessageStatus.retrying.value, next_attempt_at=at + delay, reason=reason)
        return row, cur["status"] != MessageStatus.retrying.value
    if exc.retryable:
        reason = f"gave up after {row['attempts']} attempts: {reason}"
    row.update(status=MessageStatus.failed.value, reason=reason)
    return row, True


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
