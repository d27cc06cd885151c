"""What a printed document shows: plain data built by the use cases from the service's own records, rendered by
``documents.render`` (one template per kind, HTML and PDF from the same template)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal


@dataclass(frozen=True)
class DocLine:
    line_id: str
    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@dataclass(frozen=True)
class DocShipment:
    number: str  # "1001-S1"
    shipping_point: str  # local | international | pickup (the delivery method)
    carrier: str | None
    service: str | None
    tracking_number: str | None
    status: str
    expected_delivery: date | None
    lines: list[DocLine]  # the order's lines with THIS shipment's quantities (line_total for those units)


@dataclass(frozen=True)
class DocParty:
    name: str
    phone: str | None = None
    email: str | None = None
    address_lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DocumentData:
    """Everything a packing slip, an invoice or the order details needs. Amounts are exact ``Decimal`` in
    ``currency``; the renderer formats them with ``shared.money.format_amount``."""

    kind: str  # packing_slip | invoice | order_details
    document_number: str  # "INV-000123" / "PS-1001-S1" / "ORD-1001"
    issued_at: datetime
    store: DocParty
    order_number: int
    order_id: str
    placed_at: datetime
    channel: str
    stage: str
    fulfillment_status: str
    test: bool
    currency: str
    customer: DocParty
    ship_to: DocParty | None
    lines: list[DocLine]
    subtotal: Decimal
    shipping: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal
    payment_method: str | None = None
    customer_note: str | None = None
    shipments: list[DocShipment] = field(default_factory=list)
    # packing slip: the one shipment it is for
    shipment: DocShipment | None = None
    # invoice: one section per delivery method when the order's shipments differ (help center: splitting
    # order invoices based on delivery method); empty = one section for the whole order
    sections: list[DocShipment] = field(default_factory=list)
