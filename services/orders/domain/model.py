"""The order aggregate as the domain sees it: plain frozen values, not the HTTP views nor the stored document.

``Order`` and its parts (``LineItem``, ``Totals``, ``StaffNote``) and the ``HistoryRecord`` a change appends
are frozen dataclasses: nothing outside the domain functions builds a changed order, and nothing here knows
JSON. The store maps them to and from rows (``services.orders.document``), ``services.orders.usecases.views``
maps them to the contract's views, ``domain.events`` to the contract's events. The value objects (``Customer``,
``Address``, ``Actor``) are the contract's own types: they are the vocabulary every side shares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any
from uuid import UUID

from services.fulfillment.contracts.vocabulary import FulfillmentStatus
from services.orders.contracts.schemas import Actor, Address, Channel, Customer, PaymentMethodChoice, Stage
from shared.money import quantize


@dataclass(frozen=True, slots=True)
class LineItem:
    """One line of the order: what was bought, how many, at what price (all in the order's currency)."""

    sku: str
    name: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@dataclass(frozen=True, slots=True)
class Totals:
    """total = subtotal + shipping + tax - discount, all in the order's currency."""

    subtotal: Decimal
    shipping: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffNote:
    """A note the team keeps on an order. Deleting only hides it: the audit trail keeps every version."""

    id: UUID
    text: str
    author: Actor
    created_at: datetime
    updated_at: datetime
    updated_by: Actor | None = None
    deleted: bool = False
    deleted_at: datetime | None = None
    deleted_by: Actor | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRecord:
    """One line of the order's story (who did what, when and why), appended by every change."""

    seq: int
    at: datetime
    actor: Actor
    action: str
    from_stage: Stage | None = None
    to_stage: Stage | None = None
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """The order. Immutable: every domain function returns a new ``Order``.

    ``version`` goes up by one with every change (the store's optimistic-concurrency check); ``history_seq``
    is the ``seq`` of the last history entry, so entries are numbered without reading the history back.
    """

    id: UUID
    number: int
    channel: Channel
    stage: Stage = Stage.placed
    held_from: Stage | None = None
    customer: Customer
    items: tuple[LineItem, ...]
    currency: str
    totals: Totals
    shipping_address: Address | None = None
    payment_method: PaymentMethodChoice | None = None
    paid_at: datetime | None = None
    payment_status: str | None = None
    # The card is authorized for what is due, to be captured later (authorize-then-capture): as good as
    # paid for going ahead, not for the books.
    payment_authorized: bool = False
    customer_note: str | None = None
    customer_note_skipped: bool = False
    notes: tuple[StaffNote, ...] = ()
    # The fulfillment service owns these; orders keep a copy (list filter and sort, the order page).
    fulfillment_status: FulfillmentStatus = FulfillmentStatus.unfulfilled
    shipments: tuple[Mapping[str, Any], ...] = ()
    """The order's shipments as fulfillment summarises them (its contract's ``ShipmentSummary`` as JSON)."""
    test: bool = False
    external_ref: str | None = None
    placed_at: datetime
    stage_changed_at: datetime
    created_at: datetime
    updated_at: datetime
    version: int = 1
    history_seq: int = 0

    @property
    def display_number(self) -> str:
        return display_number(self.number)

    @property
    def paid(self) -> bool:
        return self.paid_at is not None

    @property
    def item_count(self) -> int:
        return sum(item.quantity for item in self.items)


def display_number(number: int) -> str:
    """How people say an order's number: ``#1001``."""
    return f"#{number}"


_NUMBER_QUERY = re.compile(r"^#?\s*(\d{1,18})$")


def order_number_from_search(q: str) -> int | None:
    """``"1001"`` or ``"#1001"`` -> 1001, so a search box finds an order by the number people quote."""
    match = _NUMBER_QUERY.match(q.strip())
    return int(match.group(1)) if match else None


def compute_totals(
    items: Sequence[tuple[int, Decimal]], currency: str, shipping: Decimal, discount: Decimal, tax: Decimal
) -> Totals:
    """subtotal = sum of quantity x unit price; total = subtotal + shipping + tax - discount. Exact.

    Exact because every input already fits the currency (checked in ``new_order``), so quantizing only adds
    trailing zeros and never rounds.
    """
    with localcontext() as ctx:
        ctx.prec = 50
        subtotal = sum((Decimal(qty) * price for qty, price in items), Decimal(0))
        total = subtotal + shipping + tax - discount
    return Totals(
        subtotal=quantize(subtotal, currency),
        shipping=quantize(shipping, currency),
        discount=quantize(discount, currency),
        tax=quantize(tax, currency),
        total=quantize(total, currency),
    )


SYSTEM = Actor(type="system", id="orders", name="Orders service")
ABANDON_TIMER = Actor(type="system", id="abandon-timer", name="Abandonment timer")
AUTO_CONFIRM = Actor(type="system", id="auto-confirm", name="Automatic confirmation")
PAYMENTS = Actor(type="system", id="payments", name="Payments service")
"""Who the history names for what the payments service reported (refunds, voids, ledger alerts)."""
FULFILLMENT = Actor(type="system", id="fulfillment", name="Fulfillment service")
"""Who the history names for the stage moves and holds that follow the fulfillment service's reports."""
