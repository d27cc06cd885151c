"""Errors the notifications service raises to its clients beyond the shared ones (``shared.errors``)."""

from __future__ import annotations

from shared.errors import DomainError


class ProviderWebhookRejected(DomainError):
    """A provider webhook whose signature does not verify: ignored, answered 400."""

    status = 400
    title = "Webhook rejected"
    type = "urn:oms:problem:provider-webhook-rejected"


NOTIFICATION_ERRORS: tuple[type[DomainError], ...] = (ProviderWebhookRejected,)
