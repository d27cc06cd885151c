"""The carrier port: what the fulfillment use cases ask of a shipping carrier.

``CarrierProvider`` is the port; ``carrier.adapter.HttpCarrier`` speaks HTTP to a carrier API shaped like the
sandbox's (``contracts/sandbox.py``), and ``carrier.sandbox`` is that sandbox server. Tests of the use cases use
an in-memory fake of this port (``tests/fakes.py``); tests of the adapter run it against the sandbox over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol


class CarrierError(Exception):
    """The carrier could not be reached, timed out, or answered with an error. ``retryable``: a later retry may
    succeed (outage, 5xx, timeout); otherwise the request itself was refused (``code`` says why)."""

    def __init__(self, message: str, *, code: str = "carrier_error", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class RateRequest:
    shipper: dict[str, Any]  # Party as JSON (name, company, phone, email, address{...})
    recipient: dict[str, Any]
    packages: list[dict[str, Any]]  # Package as JSON
    currency: str
    declared_value: Decimal | None = None
    insurance: Decimal | None = None
    signature_confirmation: bool = False
    dangerous_goods: bool = False
    drop_off_date: date | None = None


@dataclass(frozen=True)
class Rate:
    rate_id: str
    carrier: str
    service: str
    amount: Decimal
    currency: str
    estimated_delivery: date | None
    transit_days: int | None


@dataclass(frozen=True)
class Rates:
    rates: list[Rate]
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Label:
    label_id: str
    tracking_number: str
    tracking_url: str | None
    carrier: str
    service: str
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class VoidResult:
    voided: bool
    reason: str | None = None  # why not (e.g. "label_in_transit")


@dataclass(frozen=True)
class TrackingUpdate:
    """One verified tracking webhook, in the carrier's words mapped to a ``ShipmentStatus`` value."""

    event_id: str
    label_id: str | None
    tracking_number: str
    status: str  # a ShipmentStatus value
    carrier_status: str
    description: str | None
    location: str | None
    occurred_at: datetime
    raw: dict[str, Any] = field(default_factory=dict)


class CarrierProvider(Protocol):
    """A shipping carrier. Each call that costs money or changes the carrier's record takes an idempotency key,
    so a retry after a lost answer never buys two labels."""

    def rates(self, request: RateRequest) -> Rates: ...

    def buy_label(self, rate_id: str, reference: str, idempotency_key: str) -> Label: ...

    def label_pdf(self, label_id: str) -> bytes: ...

    def void_label(self, label_id: str, idempotency_key: str) -> VoidResult: ...

    def verify_webhook(self, body: str, headers: dict[str, str]) -> TrackingUpdate:
        """Parse and verify a tracking webhook (signature, timestamp tolerance); raises ``CarrierError`` with
        code ``bad_signature`` if it does not verify."""
        ...
