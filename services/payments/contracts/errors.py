"""Errors the payments service raises to its clients, beyond the shared ones (``shared.errors``).

Each one is a ``DomainError`` whose class carries what the client sees (HTTP ``status``, ``title`` and a
problem ``type``); the detail sentence and the ``extra`` fields (order id, payment id, reference) travel
with it. They are part of the contract so a client (the gateway) can rebuild them by name.
"""

from __future__ import annotations

from shared.errors import DomainError


class ProviderFailed(DomainError):
    """The card provider could not be reached or refused the request (nothing was recorded)."""

    status = 502
    title = "Payment provider failed"
    type = "urn:oms:problem:provider-failed"


class WebhookRejected(DomainError):
    """A provider webhook whose signature or timestamp does not verify: ignored, answered 400."""

    status = 400
    title = "Webhook rejected"
    type = "urn:oms:problem:webhook-rejected"


PAYMENT_ERRORS: tuple[type[DomainError], ...] = (ProviderFailed, WebhookRejected)
