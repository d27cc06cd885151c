"""Errors the notifications service raises to its clients beyond the shared ones (``shared.errors``)."""

from __future__ import annotations

from shared.errors import DomainError


class ProviderWebhookRejected(DomainError):
    """A provider webhook whose signature does not verify: ignored, answered 400."""

    status = 400
    title = "Webhook rejected"
    type = "urn:oms:problem:provider-webhook-rejected"


class ReceiptTooEarly(DomainError):
    """A receipt for a message whose send is not recorded yet (the provider answered, the sender has not
    written the provider's id): answered 503 so the provider delivers it again a moment later."""

    status = 503
    title = "Receipt arrived before its message was recorded"
    type = "urn:oms:problem:receipt-too-early"


NOTIFICATION_ERRORS: tuple[type[DomainError], ...] = (ProviderWebhookRejected, ReceiptTooEarly)
