"""The fulfillment contract: RPC/HTTP request bodies and response views.

Order lines are named as the payments service names them: ``line_id`` is the line's position in the order as
placed, from ``"1"``; a command may name a line by its id or by its SKU (when the SKU is on one line only).
Quantities are whole units. Money is a decimal string in the order's currency (``shared.money``).

RPC methods of ``fulfillment`` (the gateway's router calls these; ``actor`` is ``orders`` ``Actor`` as JSON):

* ``get_fulfillment(order_id) -> FulfillmentView``
* ``mark_packed(order_id, actor) -> FulfillmentView``
* ``create_shipment(order_id, command: ManualFulfill, actor) -> ShipmentView``
* ``carrier_rates(order_id, command: CarrierFulfill) -> RateList``
* ``buy_label(order_id, command: BuyLabel, actor, idempotency_key) -> ShipmentView``
* ``get_shipment(shipment_id) -> ShipmentView`` (with its tracking history)
* ``edit_shipment(shipment_id, command: EditShipment, actor) -> ShipmentView``
* ``mark_delivered(shipment_id, command: MarkDelivered, actor) -> ShipmentView``
* ``cancel_shipment(shipment_id, command: CancelShipment, actor) -> ShipmentView``
* ``shipment_label(shipment_id) -> DocumentFile`` (the carrier's PDF label)
* ``record_return(order_id, command: ReturnCommand, actor) -> ReturnView``
* ``retry_reservation(order_id, actor) -> FulfillmentView``
* ``list_stock(sku=None, location=None, low=False, limit=100, after=None) -> StockList``
* ``set_stock(sku, command: SetStock, actor) -> StockItemView``
* ``adjust_stock(sku, command: AdjustStock, actor) -> StockItemView``
* ``stock_movements(sku, limit=100) -> MovementList``
* ``reconcile_stock(fix=False) -> ReconcileReport``
* ``render_document(kind, ref, fmt) -> DocumentFile`` (``kind``: ``DocumentKind``; ``ref``: the order id,
  or the shipment id for a packing slip; ``fmt``: ``html`` or ``pdf``)
* ``render_packing_slips(order_ids, fmt) -> DocumentFile`` (every open or handed-over shipment's packing slip of
  those orders, as ONE document, each slip on a new page)
* ``handle_carrier_webhook(body, headers) -> WebhookAck``
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.fulfillment.contracts.vocabulary import (
    FulfillmentStatus,
    ShipmentKind,
    ShipmentStatus,
    ShippingPoint,
)
from services.orders.contracts.schemas import Actor, Address, Stage
from shared.money import Amount, MoneyValue

Sku = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
LocationName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                                pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Units = Annotated[int, Field(ge=1, le=1_000_000)]

DEFAULT_LOCATION = "main"
"""The location stock is set at when none is named, and the default ship-from point."""

DocumentKind = Literal["packing_slip", "invoice", "order_details"]
DocumentFormat = Literal["html", "pdf"]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------------------------------- stock
class SetStock(_Command):
    """Count the units on hand of a SKU at a location (a stock take). ``reason`` goes to the movement history."""

    location: LocationName = DEFAULT_LOCATION
    on_hand: Annotated[int, Field(ge=0, le=1_000_000_000)]
    reason: Reason


class AdjustStock(_Command):
    """Add (received goods) or remove (damaged, lost) units at a location. Never below what is reserved."""

    location: LocationName = DEFAULT_LOCATION
    delta: Annotated[int, Field(ge=-1_000_000_000, le=1_000_000_000)]
    reason: Reason

    @model_validator(mode="after")
    def _not_zero(self) -> AdjustStock:
        if self.delta == 0:
            raise ValueError("delta must not be 0")
        return self


class StockLevelView(_View):
    location: str
    on_hand: int
    reserved: int
    available: int  # on_hand - reserved, never negative
    updated_at: datetime


class StockItemView(_View):
    sku: str
    on_hand: int
    reserved: int
    available: int
    locations: list[StockLevelView]


class StockList(_View):
    items: list[StockItemView]
    next_after: str | None = None


class MovementView(_View):
    id: UUID
    sku: str
    location: str
    delta_on_hand: int
    delta_reserved: int
    on_hand_after: int
    reserved_after: int
    reason: str
    order_id: UUID | None = None
    order_number: int | None = None
    actor: Actor
    at: datetime


class MovementList(_View):
    items: list[MovementView]


class ReconcileDrift(_View):
    sku: str
    location: str
    recorded_reserved: int
    reservations_total: int


class ReconcileReport(_View):
    checked: int
    drift: list[ReconcileDrift]
    fixed: bool


# ------------------------------------------------------------------------------------------- fulfilling
class LineUnits(_Command):
    """Units of one order line: ``line`` is the line id (``"1"``, ``"2"``, …) or its SKU."""

    line: Text
    quantity: Units


class ManualFulfill(_Command):
    """Manual Fulfill (help center): chosen lines and units, a shipping point, carrier and tracking number
    (both required for ``international``). Creates one shipment, ``awaiting_shipment``, or ``shipped`` when
    ``shipped`` is true (handed over at once). Without ``lines``: every unit still unfulfilled."""

    lines: list[LineUnits] = Field(default_factory=list)
    shipping_point: ShippingPoint = ShippingPoint.local
    carrier: Text | None = None
    tracking_number: Text | None = None
    tracking_url: Annotated[str, StringConstraints(max_length=500)] | None = None
    expected_delivery: date | None = None
    location: LocationName = DEFAULT_LOCATION
    shipped: bool = False
    notify_customer: bool = True

    @model_validator(mode="after")
    def _international_needs_tracking(self) -> ManualFulfill:
        if self.shipping_point is ShippingPoint.international and not (self.carrier and self.tracking_number):
            raise ValueError("an international shipment needs carrier and tracking_number")
        return self


class Party(_Command):
    """Shipper or recipient of a carrier shipment."""

    name: Text
    company: Text | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=40)] | None = None
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    address: Address


class Package(_Command):
    """One parcel. ``preset`` names a package type of the carrier (``small_box``, ``medium_box``, ``envelope``…);
    otherwise give the dimensions."""

    preset: Text | None = None
    weight_grams: Annotated[int, Field(ge=1, le=1_000_000)]
    length_cm: Annotated[int, Field(ge=1, le=500)] | None = None
    width_cm: Annotated[int, Field(ge=1, le=500)] | None = None
    height_cm: Annotated[int, Field(ge=1, le=500)] | None = None


class CarrierFulfill(_Command):
    """Carrier Fulfill (help center): lines and units, packages, shipper and recipient (default: the store and
    the order's customer and address), ship-from location, drop-off date, insurance, declared value,
    dangerous goods, signature confirmation. Asks the carrier for rates."""

    lines: list[LineUnits] = Field(default_factory=list)
    packages: list[Package] = Field(min_length=1, max_length=20)
    shipper: Party | None = None
    recipient: Party | None = None
    location: LocationName = DEFAULT_LOCATION
    drop_off_date: date | None = None
    insurance: Amount | None = None
    declared_value: Amount | None = None
    dangerous_goods: bool = False
    signature_confirmation: bool = False


class RateView(_View):
    rate_id: str
    carrier: str
    service: str
    amount: MoneyValue
    currency: str
    estimated_delivery: date | None = None
    transit_days: int | None = None


class RateList(_View):
    rates: list[RateView]
    expires_at: datetime | None = None


class BuyLabel(CarrierFulfill):
    """Buy the label of one of the rates: creates a shipment with the carrier's tracking number and label."""

    rate_id: Text
    notify_customer: bool = True


class EditShipment(_Command):
    """Edit Shipment (help center; manual shipments only). Omitted fields keep their value; ``status`` only
    moves forward (``SHIPMENT_TRANSITIONS``)."""

    carrier: Text | None = None
    tracking_number: Text | None = None
    tracking_url: Annotated[str, StringConstraints(max_length=500)] | None = None
    status: ShipmentStatus | None = None
    expected_delivery: date | None = None
    notify_customer: bool = False


class MarkDelivered(_Command):
    notify_customer: bool = True


class CancelShipment(_Command):
    """Void/Cancel: the shipment's units are unfulfilled again. A carrier label is voided at the carrier."""

    reason: Reason | None = None


class ReturnLine(_Command):
    line: Text
    quantity: Units
    restock: bool = False
    location: LocationName = DEFAULT_LOCATION


class ReturnCommand(_Command):
    """Return Order (help center): units that came back after delivery; ``restock`` per line puts them back
    on hand. Only units delivered and not already returned can be returned."""

    lines: list[ReturnLine] = Field(min_length=1)
    reason: Reason | None = None


# ---------------------------------------------------------------------------------------------- views
class TrackingEventView(_View):
    status: ShipmentStatus
    at: datetime
    description: str | None = None
    location: str | None = None
    source: Literal["staff", "carrier", "system"]
    applied: bool  # false: late or duplicated, recorded but did not move the shipment


class ShipmentLineView(_View):
    line_id: str
    sku: str
    name: str
    quantity: int


class ShipmentView(_View):
    id: UUID
    order_id: UUID
    order_number: int
    number: str
    kind: ShipmentKind
    shipping_point: ShippingPoint
    status: ShipmentStatus
    carrier: str | None = None
    service: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    expected_delivery: date | None = None
    label_available: bool = False
    label_cost: MoneyValue | None = None
    label_currency: str | None = None
    location: str
    lines: list[ShipmentLineView]
    allowed_statuses: list[ShipmentStatus]  # where an edit may move it now (empty for carrier shipments)
    can_edit: bool
    can_cancel: bool
    can_mark_delivered: bool
    created_at: datetime
    updated_at: datetime
    tracking: list[TrackingEventView] = Field(default_factory=list)


class FulfillmentLineView(_View):
    line_id: str
    sku: str
    name: str
    ordered: int
    in_open_shipments: int  # packed, awaiting the carrier
    handed_over: int
    delivered: int
    returned: int
    unfulfilled: int  # may still be fulfilled: ordered - (open + handed over)
    returnable: int  # delivered - returned
    stock_tracked: bool
    reserved: int


class ReturnView(_View):
    id: UUID
    order_id: UUID
    lines: list[ReturnLine]
    reason: str | None = None
    actor: Actor
    at: datetime


class FulfillmentView(_View):
    order_id: UUID
    order_number: int
    order_stage: Stage
    status: FulfillmentStatus
    packed: bool
    can_fulfill: bool  # the order is approved (or later) and not cancelled, and units remain
    why_not: str | None = None  # why fulfilling is not allowed now, in the merchant's words
    reservation: Literal["reserved", "out_of_stock", "released", "consumed", "not_tracked"]
    lines: list[FulfillmentLineView]
    shipments: list[ShipmentView]
    returns: list[ReturnView]


class DocumentFile(_View):
    """A rendered document. ``content`` is text for HTML, base64 for PDF."""

    filename: str
    content_type: str
    encoding: Literal["text", "base64"]
    content: str


class PackingSlipsRequest(BaseModel):
    """Print the packing slips of several orders at once (bulk action): order ids or numbers."""

    model_config = ConfigDict(extra="forbid")

    orders: Annotated[list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]],
                      Field(min_length=1, max_length=500)]


class WebhookAck(_View):
    received: bool = True
    applied: bool
