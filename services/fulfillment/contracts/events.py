"""Events the fulfillment service publishes (the ``data`` of the CloudEvent).

Subject: the order id for every order-related event (so a subscriber gets them in per-order order with the
order's own events); the SKU for ``fulfillment.stock_changed.v1``. Every order event carries ``order_id``,
``number`` and ``test`` so a consumer (orders, payments, notifications, a dashboard) acts without calling back.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar
from uuid import UUID

from services.fulfillment.contracts.vocabulary import (
    FulfillmentStatus,
    ShipmentKind,
    ShipmentStatus,
    ShippingPoint,
)
from services.orders.contracts.schemas import Actor
from shared.envelope import EventModel


class FulfillmentEvent(EventModel):
    """Fields every order-related fulfillment event has. Not an event type itself."""

    order_id: UUID
    number: int
    test: bool = False
    at: datetime
    actor: Actor


class LineQuantity(EventModel):
    """Units of one order line (``line_id`` as in the order; ``sku`` for readers that go by SKU)."""

    line_id: str
    sku: str
    quantity: int


class ShortLine(EventModel):
    line_id: str
    sku: str
    requested: int
    available: int


class ShipmentSummary(EventModel):
    """A shipment as other services keep it (orders shows it on the order, notifications tells the customer)."""

    shipment_id: UUID
    number: str  # e.g. "1001-S2": the order number and the shipment's rank in the order
    kind: ShipmentKind
    shipping_point: ShippingPoint
    status: ShipmentStatus
    carrier: str | None = None
    service: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    expected_delivery: date | None = None
    lines: list[LineQuantity]


class StockReserved(FulfillmentEvent):
    """The order's stock-tracked units were reserved (at placement, or on a retry after a shortage)."""

    event_type: ClassVar[str] = "fulfillment.stock_reserved.v1"

    lines: list[LineQuantity]


class OutOfStock(FulfillmentEvent):
    """The order cannot be served from stock: nothing was reserved for it. Orders puts it on hold with reason
    ``out_of_stock``; staff restock and retry the reservation, or reject the order."""

    event_type: ClassVar[str] = "fulfillment.out_of_stock.v1"

    reason: str = "out_of_stock"
    lines: list[ShortLine]


class StockReleased(FulfillmentEvent):
    """The order's reservations went back to stock (it was cancelled, rejected or abandoned)."""

    event_type: ClassVar[str] = "fulfillment.stock_released.v1"

    lines: list[LineQuantity]


class FulfillmentStatusChanged(FulfillmentEvent):
    """The order's computed fulfillment status changed. Orders follows it with the order's stage; the
    quantities and shipments are the state after the change."""

    event_type: ClassVar[str] = "fulfillment.status_changed.v1"

    from_status: FulfillmentStatus
    to_status: FulfillmentStatus
    ordered: int
    handed_over: int
    delivered: int
    returned: int
    shipments: list[ShipmentSummary]


class ShipmentCreated(FulfillmentEvent):
    """A fulfillment created a shipment (manual, or a carrier label bought)."""

    event_type: ClassVar[str] = "fulfillment.shipment_created.v1"

    shipment: ShipmentSummary
    notify_customer: bool = True


class ShipmentStatusChanged(FulfillmentEvent):
    """A shipment moved forward (staff, or the carrier's tracking). ``notify_customer`` carries staff's
    "send notification to the customer" switch (carrier updates: true)."""

    event_type: ClassVar[str] = "fulfillment.shipment_status_changed.v1"

    shipment: ShipmentSummary
    from_status: ShipmentStatus
    to_status: ShipmentStatus
    notify_customer: bool = True
    reason: str | None = None  # the carrier's words for a failed delivery, staff's for a cancel


class ShipmentEdited(FulfillmentEvent):
    """Staff edited a manual shipment (carrier, tracking number, expected delivery)."""

    event_type: ClassVar[str] = "fulfillment.shipment_edited.v1"

    shipment: ShipmentSummary
    changed: list[str]
    notify_customer: bool = False


class LabelVoidFailed(FulfillmentEvent):
    """The carrier refused to void a label (the parcel is already moving): the shipment stays, staff must act."""

    event_type: ClassVar[str] = "fulfillment.label_void_failed.v1"

    shipment: ShipmentSummary
    reason: str


class ReturnRecorded(FulfillmentEvent):
    """Staff recorded units coming back after delivery. Payments offers them in the refund preview; orders
    moves the order to ``returned`` once everything came back."""

    event_type: ClassVar[str] = "fulfillment.return_recorded.v1"

    return_id: UUID
    lines: list[LineQuantity]
    restocked: list[LineQuantity]
    reason: str | None = None


class StockChanged(EventModel):
    """A stock level changed at a location (subject: the SKU). Not per order."""

    event_type: ClassVar[str] = "fulfillment.stock_changed.v1"

    sku: str
    location: str
    on_hand: int
    reserved: int
    available: int
    delta_on_hand: int
    delta_reserved: int
    reason: str
    order_id: UUID | None = None
    at: datetime
    actor: Actor


FULFILLMENT_EVENTS: tuple[type[EventModel], ...] = (
    StockReserved,
    OutOfStock,
    StockReleased,
    FulfillmentStatusChanged,
    ShipmentCreated,
    ShipmentStatusChanged,
    ShipmentEdited,
    LabelVoidFailed,
    ReturnRecorded,
    StockChanged,
)
"""Every event type this service publishes, for the catalog and the README."""
