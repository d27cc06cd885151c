"""Events the orders service publishes (the ``data`` of the CloudEvent; subject = the order id).

Every change to an order emits exactly one of these, written to the outbox in the same transaction as the
change, so a subscriber sees every change once and in order (per-order ``sequence``).

There is ONE ``order.stage_changed.v1`` type for every move between stages rather than one type per stage:
a new stage then needs no new event type, and a subscriber that cares about one stage filters on
``to_stage``. Every event carries ``order_id``, ``number`` and ``test`` so a consumer (notifications, a
dashboard) can act on it without calling back, and can ignore the merchant's test orders.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import ConfigDict

from services.orders.contracts.schemas import (
    Actor,
    Address,
    Channel,
    Customer,
    LineItemView,
    PaymentMethodChoice,
    Stage,
    Totals,
)
from shared.envelope import EventModel


class CustomerData(Customer):
    """The customer as carried in an event: unknown fields are ignored so producers may add some."""

    model_config = ConfigDict(extra="ignore")


class AddressData(Address):
    """The address as carried in an event: unknown fields are ignored so producers may add some."""

    model_config = ConfigDict(extra="ignore")


class OrderEvent(EventModel):
    """Fields every order event has. Not an event type itself (no ``event_type``)."""

    order_id: UUID
    number: int
    test: bool = False
    version: int
    at: datetime
    actor: Actor


class OrderPlaced(OrderEvent):
    """A new order was placed: the full order as it was received."""

    event_type: ClassVar[str] = "order.placed.v1"

    channel: Channel
    stage: Stage
    customer: CustomerData
    items: list[LineItemView]
    currency: str
    totals: Totals
    shipping_address: AddressData | None = None
    payment_method: PaymentMethodChoice | None = None
    customer_note: str | None = None
    placed_at: datetime
    external_ref: str | None = None


class OrderStageChanged(OrderEvent):
    """The order moved from one stage to another (by staff, the customer or an automatic rule)."""

    event_type: ClassVar[str] = "order.stage_changed.v1"

    from_stage: Stage
    to_stage: Stage
    reason: str | None = None
    held_from: Stage | None = None


class OrderAddressSet(OrderEvent):
    """The shipping address was given or corrected."""

    event_type: ClassVar[str] = "order.address_set.v1"

    address: AddressData
    previous: AddressData | None = None


class OrderPaymentMethodSet(OrderEvent):
    """The customer chose how to pay, or the payment was marked as received."""

    event_type: ClassVar[str] = "order.payment_method_set.v1"

    method: PaymentMethodChoice
    paid: bool
    paid_at: datetime | None = None
    previous_method: PaymentMethodChoice | None = None


class OrderCustomerNoteSet(OrderEvent):
    """The customer added a note to the order, or skipped adding one."""

    event_type: ClassVar[str] = "order.customer_note_set.v1"

    note: str | None = None
    skipped: bool = False


class OrderCustomerChanged(OrderEvent):
    """Staff replaced the order's customer (name, phone, e-mail)."""

    event_type: ClassVar[str] = "order.customer_changed.v1"

    customer: CustomerData
    previous: CustomerData


class OrderNoteAdded(OrderEvent):
    """A staff note was added to the order."""

    event_type: ClassVar[str] = "order.note_added.v1"

    note_id: UUID
    text: str


class OrderNoteEdited(OrderEvent):
    """A staff note's text was changed (the previous text is kept)."""

    event_type: ClassVar[str] = "order.note_edited.v1"

    note_id: UUID
    text: str
    previous_text: str


class OrderNoteDeleted(OrderEvent):
    """A staff note was deleted (it stays in the audit trail, hidden from the order page)."""

    event_type: ClassVar[str] = "order.note_deleted.v1"

    note_id: UUID


ORDER_EVENTS: tuple[type[OrderEvent], ...] = (
    OrderPlaced,
    OrderStageChanged,
    OrderAddressSet,
    OrderPaymentMethodSet,
    OrderCustomerNoteSet,
    OrderCustomerChanged,
    OrderNoteAdded,
    OrderNoteEdited,
    OrderNoteDeleted,
)
"""Every event type this service publishes, for the catalog, the README and the AsyncAPI document."""

__all__ = [
    "AddressData",
    "CustomerData",
    "ORDER_EVENTS",
    "OrderAddressSet",
    "OrderCustomerChanged",
    "OrderCustomerNoteSet",
    "OrderEvent",
    "OrderNoteAdded",
    "OrderNoteDeleted",
    "OrderNoteEdited",
    "OrderPaymentMethodSet",
    "OrderPlaced",
    "OrderStageChanged",
]
