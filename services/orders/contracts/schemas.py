"""The orders contract: bodies of the HTTP API and of the Nameko RPC calls.

The gateway validates request bodies with these models and publishes their JSON schemas as OpenAPI; the
orders service receives them over RPC as ``model_dump(mode="json")`` dicts and validates them again with
the same models, so a client gets the same field-level error wherever it calls from. The one exception is
the placement hot path: the gateway's batched ``place_orders`` says its commands are validated, and the
service rebuilds them with ``trusted_place_order`` instead of validating the same payload twice.

Why the types look the way they do:

* Money is ``Decimal`` and travels as a string (``"12.50"``). A JSON float such as ``12.5`` is refused
  rather than converted, because binary floats cannot hold most prices exactly and a silently rounded price
  is worse than a clear 422.
* Commands forbid unknown fields, so a typo (``shiping``) is an error instead of an ignored value.
* Totals are never accepted from a client: the domain computes them from the line items.
* The stage and channel vocabularies live here (not in the domain) because both the domain and the
  events are built on top of this module; ``contracts.stages`` holds the table of moves between them.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from services.fulfillment.contracts.vocabulary import (
    FulfillmentStatus,
    ShipmentKind,
    ShipmentStatus,
    ShippingPoint,
)
from shared.errors import field_errors, field_path
from shared.money import Amount, CurrencyCode, MoneyValue

# --------------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------------


class Stage(StrEnum):
    """Where an order is in its journey, in the merchant's words (see ``contracts.stages.STAGE_DESCRIPTIONS``)."""

    placed = "placed"
    abandoned = "abandoned"
    confirmed = "confirmed"
    on_hold = "on_hold"
    rejected = "rejected"
    cancelled = "cancelled"
    approved = "approved"
    processed = "processed"
    shipped = "shipped"
    delivered = "delivered"
    returned = "returned"
    archived = "archived"


class Channel(StrEnum):
    """Where the order came from. ``test`` orders are the merchant's own trial orders."""

    whatsapp = "whatsapp"
    web = "web"
    manual = "manual"
    test = "test"
    marketplace = "marketplace"
    chat = "chat"
    pos = "pos"


class PaymentMethodChoice(StrEnum):
    """How the customer chose to pay. All but ``card`` are settled outside the system (manual methods)."""

    cash_on_delivery = "cash_on_delivery"
    bank_transfer = "bank_transfer"
    pos_on_delivery = "pos_on_delivery"
    card = "card"


MANUAL_PAYMENT_METHODS: frozenset[PaymentMethodChoice] = frozenset(
    {
        PaymentMethodChoice.cash_on_delivery,
        PaymentMethodChoice.bank_transfer,
        PaymentMethodChoice.pos_on_delivery,
    }
)
"""Methods where "the customer chose it" is enough to go ahead: the money arrives on delivery or by hand."""


# --------------------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------------------


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


CountryCode = Annotated[
    str,
    BeforeValidator(_upper),
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{2}$", "examples": ["DE"]}),
]
"""ISO 3166-1 alpha-2 country code, e.g. ``DE``."""

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")

Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254, pattern=EMAIL_RE.pattern),
]
"""Deliberately simple check (something@domain.tld): deliverability is the mailer's business."""

Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=32, pattern=r"^\+?[0-9][0-9 ()./-]*$"),
]
"""A phone number as the customer typed it (digits, spaces, + ( ) . / -); WhatsApp orders key on it."""

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Sku = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
NoteText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]
Quantity = Annotated[int, Field(strict=True, gt=0, le=1_000_000)]
ExpectedVersion = Annotated[
    int | None,
    Field(ge=1, description="Refuse the change (409 Version conflict) unless the order is still at this version."),
]


class _Command(BaseModel):
    """Base of every request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _View(BaseModel):
    """Base of every response body."""

    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------


class Customer(_Command):
    """Who ordered. Phone and e-mail are optional: a POS or manual order may have neither."""

    name: Name
    phone: Phone | None = None
    email: Email | None = None


class Address(_Command):
    """Where the order ships to."""

    line1: ShortText
    line2: ShortText | None = None
    city: Name
    region: Name | None = None
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)] | None = None
    country: CountryCode


class LineItemIn(_Command):
    """One line of the cart as the customer ordered it."""

    sku: Sku
    name: ShortText
    quantity: Quantity
    unit_price: Amount


class Actor(BaseModel):
    """Who did something: recorded on every history entry, note and event."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["staff", "customer", "system", "integration"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


# --------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------


class PlaceOrder(_Command):
    """A new order. Totals are computed from the items, never taken from the client."""

    channel: Channel
    customer: Customer
    items: Annotated[list[LineItemIn], Field(min_length=1, max_length=500)]
    currency: CurrencyCode
    shipping: Amount = Decimal(0)
    discount: Amount = Decimal(0)
    tax: Amount = Decimal(0)
    shipping_address: Address | None = None
    payment_method: PaymentMethodChoice | None = None
    customer_note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)] | None = None
    test: bool = False
    placed_at: AwareDatetime | None = Field(
        default=None, description="When the customer placed it (imports); defaults to when it is recorded."
    )
    external_ref: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = Field(
        default=None, description="The order's id in the channel it came from (marketplace, shop)."
    )


def trusted_place_order(data: dict[str, Any]) -> PlaceOrder:
    """A ``PlaceOrder`` rebuilt WITHOUT validation from ``model_dump(mode="json")`` of one that was validated.

    For a trusted internal caller (the gateway validated the body with this very model): validating the same
    payload again cost more than the rest of placing it in Python. Only values that validation already
    normalized come in, so each field is just turned back into its type. Keep it in step with ``PlaceOrder``
    (a unit test compares it with ``model_validate`` for every field).
    """
    address = data.get("shipping_address")
    method = data.get("payment_method")
    placed_at = data.get("placed_at")
    return PlaceOrder.model_construct(
        channel=Channel(data["channel"]),
        customer=Customer.model_construct(**data["customer"]),
        items=[
            LineItemIn.model_construct(
                sku=i["sku"], name=i["name"], quantity=i["quantity"], unit_price=Decimal(i["unit_price"])
            )
            for i in data["items"]
        ],
        currency=data["currency"],
        shipping=Decimal(data.get("shipping", 0)),
        discount=Decimal(data.get("discount", 0)),
        tax=Decimal(data.get("tax", 0)),
        shipping_address=None if address is None else Address.model_construct(**address),
        payment_method=None if method is None else PaymentMethodChoice(method),
        customer_note=data.get("customer_note"),
        test=bool(data.get("test", False)),
        placed_at=None if placed_at is None else datetime.fromisoformat(placed_at),
        external_ref=data.get("external_ref"),
    )


class SetAddress(_Command):
    """The customer filled in (or staff corrected) the shipping address."""

    address: Address
    expected_version: ExpectedVersion = None


class SetPaymentMethod(_Command):
    """The customer chose how to pay; ``paid`` says the money has already arrived."""

    method: PaymentMethodChoice
    paid: bool = False
    expected_version: ExpectedVersion = None


class SetCustomerNote(_Command):
    """The customer added a note to the order, or skipped the question (one of the two)."""

    note: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)] | None = None
    skip: bool = False
    expected_version: ExpectedVersion = None

    @model_validator(mode="after")
    def _note_or_skip(self) -> SetCustomerNote:
        if (self.note is None) == (not self.skip):
            raise ValueError("give either a note or skip=true (not both, not neither)")
        return self


class ChangeCustomer(_Command):
    """Staff replaced the order's customer (e.g. the buyer checked out with other contact details)."""

    customer: Customer
    expected_version: ExpectedVersion = None


class Transition(_Command):
    """Move the order to another stage."""

    to: Stage
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] | None = None
    expected_version: ExpectedVersion = None


class AddNote(_Command):
    """A staff note: a reminder or comment for the team, never shown to the customer."""

    text: NoteText


class EditNote(_Command):
    """New text for a staff note; the previous text stays in the order's history."""

    text: NoteText


# --------------------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------------------


class LineItemView(_View):
    sku: str
    name: str
    quantity: int
    unit_price: MoneyValue
    line_total: MoneyValue


class Totals(_View):
    """total = subtotal + shipping + tax - discount, all in the order's currency."""

    subtotal: MoneyValue
    shipping: MoneyValue
    discount: MoneyValue
    tax: MoneyValue
    total: MoneyValue


class NoteView(_View):
    id: UUID
    text: str
    author: Actor
    created_at: datetime
    updated_at: datetime
    deleted: bool = False


class HistoryEntry(_View):
    """One line of the order's story: who did what, when and why."""

    seq: int
    at: datetime
    actor: Actor
    action: str
    from_stage: Stage | None = None
    to_stage: Stage | None = None
    reason: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class OrderSummary(_View):
    """An order card in the list."""

    id: UUID
    number: int
    display_number: str
    channel: Channel
    stage: Stage
    held_from: Stage | None = None
    customer: Customer
    currency: str
    totals: Totals
    payment_method: PaymentMethodChoice | None = None
    payment_status: str | None = None
    payment_authorized: bool = False
    paid_at: datetime | None = None
    test: bool = False
    fulfillment_status: FulfillmentStatus = FulfillmentStatus.unfulfilled
    item_count: int
    placed_at: datetime
    updated_at: datetime
    version: int


class ShipmentLineView(_View):
    """Units of one order line in a shipment (``line_id``: the line's position in the order, from ``"1"``)."""

    line_id: str
    sku: str
    quantity: int


class ShipmentInfo(_View):
    """A shipment of the order as the fulfillment service last reported it (its ``ShipmentSummary``)."""

    shipment_id: UUID
    number: str
    kind: ShipmentKind
    shipping_point: ShippingPoint
    status: ShipmentStatus
    carrier: str | None = None
    service: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    expected_delivery: date | None = None
    lines: list[ShipmentLineView] = Field(default_factory=list)


class OrderDetail(OrderSummary):
    """The order page: everything on the card plus items, address, shipments, notes, history and the moves
    allowed."""

    items: list[LineItemView]
    shipments: list[ShipmentInfo] = Field(default_factory=list)
    shipping_address: Address | None = None
    customer_note: str | None = None
    customer_note_skipped: bool = False
    notes: list[NoteView] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    allowed_transitions: list[Stage] = Field(default_factory=list)


class OrderPage(_View):
    items: list[OrderSummary]
    next_cursor: str | None = None


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NO_OFFSET = (
    "{value} has no UTC offset, so it names no single moment: give a date (2021-03-02, the whole day in UTC) or "
    "a date-time with an offset (2021-03-02T10:00:00+01:00, or Z for UTC)"
)


def _day_or_moment(end_of_day: bool) -> Any:
    """A query bound given as a date or as a date-time with an offset (the list's ``placed_from``/``placed_to``).

    A date means a whole day in UTC: ``placed_from=2021-03-02`` is its start (00:00Z), ``placed_to=2021-03-02``
    its end, i.e. the next day's start, since ``placed_to`` is exclusive. A date-time without an offset is
    refused (code ``timezone_aware``) saying why and what to send instead.
    """

    def parse(value: Any) -> Any:
        if isinstance(value, str) and _DAY.match(value.strip()):
            value = date.fromisoformat(value.strip())  # an impossible day (02-30) is a ValueError: a 422
        if isinstance(value, date) and not isinstance(value, datetime):
            start = datetime.combine(value, time.min, tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                return value  # not ISO 8601: pydantic says what is wrong
            if moment.tzinfo is None:
                raise PydanticCustomError("timezone_aware", _NO_OFFSET, {"value": value})
        return value

    return BeforeValidator(parse)


def _day_or_moment_schema(end_of_day: bool) -> WithJsonSchema:
    day = "up to the end of that day in UTC (exclusive)" if end_of_day else "from the start of that day in UTC"
    return WithJsonSchema({
        "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}],
        "description": f"A date (`2021-03-02`: {day}) or a date-time with an offset (`2021-03-02T10:00:00+01:00`).",
    })


def _comma_separated(value: Any) -> Any:
    """``a,b`` (one query parameter) and ``a&...=b`` (repeated) both mean the list ``[a, b]``."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [part.strip() for v in value for part in (v.split(",") if isinstance(v, str) else [v])
                if not isinstance(part, str) or part.strip()]
    return value


PlacedFrom = Annotated[AwareDatetime | None, _day_or_moment(False), _day_or_moment_schema(False)]
PlacedTo = Annotated[AwareDatetime | None, _day_or_moment(True), _day_or_moment_schema(True)]


PaymentStatusFilter = Literal["unpaid", "in_progress", "partially_paid", "paid", "partially_refunded", "refunded"]
"""The payment statuses the order list filters by: the payments contract's ``PaymentStatus`` values (that contract
imports this one, so they are named here; a unit test keeps the two equal)."""


class OrderQuery(_Command):
    """Search, filter and sort the order list (keyset pagination: pass ``next_cursor`` back as ``cursor``)."""

    problem_location: ClassVar[str] = "query"
    """Where an HTTP client sends these fields: invalid ones are reported with ``location`` ``query``."""

    stage: list[Stage] | None = None
    channel: list[Channel] | None = None
    fulfillment_status: Annotated[list[FulfillmentStatus] | None, BeforeValidator(_comma_separated)] = Field(
        default=None, description="Fulfillment statuses, comma-separated or repeated (`unfulfilled,dispatched`)."
    )
    payment_status: Annotated[list[PaymentStatusFilter] | None, BeforeValidator(_comma_separated)] = Field(
        default=None, description="Payment statuses (the payments service's, as this service last heard them; an "
        "order payments has not reported on yet is `unpaid`), comma-separated or repeated (`unpaid,in_progress`)."
    )
    placed_from: PlacedFrom = None
    placed_to: PlacedTo = None
    test: bool | None = None
    q: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = Field(
        default=None, description="Order number (1001 or #1001), customer name, phone, e-mail or SKU."
    )
    sort: Literal["placed_at", "paid_at", "fulfillment_status"] = Field(
        default="placed_at",
        description="`placed_at`, `paid_at` (unpaid last) or `fulfillment_status` (by its name, then order number).",
    )
    direction: Literal["asc", "desc"] = "desc"
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, StringConstraints(max_length=1000)] | None = None


# --------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------


__all__ = [
    "MANUAL_PAYMENT_METHODS",
    "Actor",
    "AddNote",
    "Address",
    "Amount",
    "ChangeCustomer",
    "Channel",
    "CountryCode",
    "CurrencyCode",
    "Customer",
    "EditNote",
    "FulfillmentStatus",
    "HistoryEntry",
    "LineItemIn",
    "LineItemView",
    "MoneyValue",
    "NoteView",
    "OrderDetail",
    "OrderPage",
    "OrderQuery",
    "OrderSummary",
    "PaymentMethodChoice",
    "PlaceOrder",
    "SetAddress",
    "SetCustomerNote",
    "SetPaymentMethod",
    "ShipmentInfo",
    "ShipmentLineView",
    "Stage",
    "Totals",
    "field_errors",
    "field_path",
    "Transition",
]
