"""Errors the fulfillment service raises to its clients beyond the shared ones (``shared.errors``)."""

from __future__ import annotations

from shared.errors import DomainError


class CarrierFailed(DomainError):
    """The carrier could not be reached or refused the request (nothing was recorded)."""

    status = 502
    title = "Carrier failed"
    type = "urn:oms:problem:carrier-failed"


class OutOfStockError(DomainError):
    """Not enough units available at the location for what was asked."""

    status = 409
    title = "Out of stock"
    type = "urn:oms:problem:out-of-stock"


class CarrierWebhookRejected(DomainError):
    """A carrier webhook whose signature or timestamp does not verify: ignored, answered 400."""

    status = 400
    title = "Webhook rejected"
    type = "urn:oms:problem:carrier-webhook-rejected"


FULFILLMENT_ERRORS: tuple[type[DomainError], ...] = (CarrierFailed, OutOfStockError, CarrierWebhookRejected)
