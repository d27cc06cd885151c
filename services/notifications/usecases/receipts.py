"""Delivery receipts and inbound messages from the providers (their webhooks, through the gateway).

A receipt moves its message forward only (``MESSAGE_TRANSITIONS``): a late ``delivered`` after ``read``, or the
same receipt twice, changes nothing. A ``failed`` receipt is a permanent failure: staff alert and fallback
channel. An inbound WhatsApp message opens that number's 24-hour window.
"""

from __future__ import annotations

from typing import Any

from services.notifications import domain, store
from services.notifications.channels import ChannelError, Inbound, Receipt
from services.notifications.contracts.errors import ProviderWebhookRejected
from services.notifications.contracts.schemas import WebhookAck
from services.notifications.contracts.vocabulary import MessageStatus
from services.notifications.settings import NotificationSettings
from services.notifications.usecases.common import Channels, Tx, announce, log, now
from services.notifications.usecases.sending import failed
from shared import outbox
from shared.db import Database
from shared.errors import InvalidRequest, field_error

PROVIDERS = ("sms", "whatsapp")


def handle_provider_webhook(db: Database, channels: Channels, settings: NotificationSettings, provider: str,
                            body: str, headers: dict[str, str], url: str) -> dict[str, Any]:
    """Verify and apply one provider webhook; ``applied``: how many receipts moved a message."""
    if provider not in PROVIDERS:
        raise InvalidRequest(f"unknown provider '{provider}'",
                             errors=[field_error("provider", f"one of {', '.join(PROVIDERS)}", "unknown_provider",
                                                 "path")])
    headers = {k.lower(): v for k, v in (headers or {}).items()} | dict(headers or {})
    inbound: list[Inbound] = []
    try:
        if provider == "sms":
            receipts = channels.sms.parse_webhook(url, body, headers)
        else:
            receipts, inbound = channels.whatsapp.parse_webhook(body, headers)
    except ChannelError as exc:
        raise ProviderWebhookRejected(f"{provider} webhook rejected: {exc.reason}", code=exc.code) from None
    applied = 0
    with db.transaction() as tx, outbox.buffered(tx):
        for receipt in receipts:
            applied += apply_receipt(tx, settings, provider, receipt)
        for message in inbound:
            store.record_inbound(tx, message.from_number, message.at)
    return WebhookAck(received=True, applied=applied).model_dump(mode="json")


def apply_receipt(tx: Tx, settings: NotificationSettings, channel: str, receipt: Receipt) -> int:
    message = store.find_by_provider_id(tx, channel, receipt.provider_message_id)
    if message is None:
        log.info("receipt for unknown %s message %s ignored", channel, receipt.provider_message_id)
        return 0
    try:
        status = MessageStatus(receipt.status)
    except ValueError:
        log.warning("receipt with unknown status %r ignored", receipt.status)
        return 0
    if not domain.can_move(message["status"], status):
        return 0
    at = now()
    reason = receipt.reason if status is MessageStatus.failed else None
    store.update_message(tx, message["id"], at, status=status.value,
                         **({"reason": reason} if status is MessageStatus.failed else {}))
    announce(tx, message, message["status"], status.value, reason, at, "receipt")
    if status is MessageStatus.failed:
        failed(tx, settings, message, reason or "the provider reported it undeliverable", at)
    return 1
