"""What the sandbox carrier publishes for its users (like a carrier's API reference): its services, package
presets, the tracking statuses it reports, the control endpoints tests and demos use, and where it sends
webhooks.

The sandbox carrier stands in for a shipping carrier (rates, labels, voids, tracking webhooks) in
development, tests, demos and benchmarks. It is a small HTTP server (``services.fulfillment.carrier.sandbox``).

HTTP API of the sandbox (JSON; ``Authorization: Bearer <OMS_CARRIER_API_KEY>``):

* ``POST /v1/rates`` {shipper, recipient, packages, declared_value, insurance, signature_confirmation,
  dangerous_goods, drop_off_date, currency} -> {rates: [{rate_id, carrier, service, amount, currency,
  estimated_delivery, transit_days}], expires_at}
* ``POST /v1/labels`` {rate_id, reference} + ``Idempotency-Key`` -> {label_id, tracking_number,
  tracking_url, carrier, service, amount, currency, label_url, status}
* ``GET /v1/labels/{label_id}/pdf`` -> application/pdf
* ``POST /v1/labels/{label_id}/void`` (optional ``Idempotency-Key``) -> {label_id, voided: true} or 409
  {error: {code: "label_in_transit", message}} once the parcel has moved (in_transit or later)
* ``GET /v1/tracking/{tracking_number}`` -> {tracking_number, status, events: [...]}
* control (tests, demos): ``POST /v1/sandbox/tracking/{tracking_number}`` {status, description, location, repeat,
  occurred_at} sends a signed tracking webhook now (``repeat`` > 1 sends duplicates; an ``occurred_at``
  in the past makes a late update; answers {event, status, deliveries: [{attempt, status_code, error}]} once
  sent); ``POST /v1/sandbox/outage`` {down: bool} (every API call answers 503 while down). Control endpoints
  need no API key.
* errors: {error: {code, message, field?}} with a 4xx (refused; ``code`` says why) or 503 (outage).

Webhooks: ``POST <OMS_SANDBOX_CARRIER_WEBHOOK_URL>`` (default: the gateway's ``WEBHOOK_PATH``) with body
{id, type: "tracking.updated", tracking_number, label_id, status, description, location, occurred_at} and
header ``Carrier-Signature: t=<unix seconds>,v1=<hex hmac-sha256 of "<t>.<body>" with the webhook secret>``.
"""

from __future__ import annotations

WEBHOOK_PATH = "/api/v1/fulfillment/webhooks/carrier"
"""The gateway's endpoint for the sandbox carrier's signed tracking webhooks."""

SIGNATURE_HEADER = "Carrier-Signature"

CARRIER_NAME = "Sandbox Express"

SERVICES: dict[str, str] = {
    "ground": "Ground (3-5 days)",
    "express": "Express (1-2 days)",
    "overnight": "Overnight",
}

PACKAGE_PRESETS: dict[str, tuple[int, int, int]] = {
    "envelope": (32, 24, 1),
    "small_box": (20, 15, 10),
    "medium_box": (35, 25, 15),
    "large_box": (50, 40, 30),
}
"""Preset -> (length, width, height) in cm."""

TRACKING_STATUSES: dict[str, str] = {
    "label_created": "awaiting_shipment",
    "picked_up": "shipped",
    "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery",
    "delivered": "delivered",
    "failure": "delivery_failed",
    "returned_to_sender": "delivery_failed",
    "voided": "canceled",
}
"""The carrier's tracking words -> the shipment status they mean (``ShipmentStatus`` values)."""

VOIDABLE_TRACKING: frozenset[str] = frozenset({"label_created", "picked_up"})
"""A label can be voided until the parcel is in transit."""
