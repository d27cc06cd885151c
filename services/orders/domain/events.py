"""What each change to an order announces: the domain's changes mapped to the contract's event models.

The events are the published contract (``services.orders.contracts.events``); the aggregate is not. Each
function here takes the order as it is after the change (plus what the change needs to say) and builds
the one event the change emits, so the wire format is written down in one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from services.orders.contracts import events as ev
from services.orders.contracts.schemas import Actor, Address, Customer, LineItemView, PaymentMethodChoice, Stage
from services.orders.contracts.schemas import Totals as TotalsView
from services.orders.domain.model import Order


def _base(order: Order, actor: Actor, now: datetime) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "number": order.number,
        "test": order.test,
        "version": order.version,
        "at": now,
        "actor": actor,
    }


def customer_data(customer: Customer) -> ev.CustomerData:
    return ev.CustomerData.model_validate(customer.model_dump())


def address_data(address: Address | None) -> ev.AddressData | None:
    return None if address is None else ev.AddressData.model_validate(address.model_dump())


def order_placed(order: Order, actor: Actor, now: datetime) -> ev.OrderPlaced:
    """The full order as it was received."""
    t = order.totals
    return ev.OrderPlaced(
        **_base(order, actor, now),
        channel=order.channel,
        stage=order.stage,
        customer=customer_data(order.customer),
        items=[
            LineItemView(
                sku=i.sku, name=i.name, quantity=i.quantity, unit_price=i.unit_price, line_total=i.line_total
            )
            for i in order.items
        ],
        currency=order.currency,
        totals=TotalsView(subtotal=t.subtotal, shipping=t.shipping, discount=t.discount, tax=t.tax, total=t.total),
        shipping_address=address_data(order.shipping_address),
        payment_method=order.payment_method,
        customer_note=order.customer_note,
        placed_at=order.placed_at,
        external_ref=order.external_ref,
    )


def stage_changed(
    order: Order, from_stage: Stage, actor: Actor, now: datetime, reason: str | None
) -> ev.OrderStageChanged:
    return ev.OrderStageChanged(
        **_base(order, actor, now),
        from_stage=from_stage,
        to_stage=order.stage,
        reason=reason,
        held_from=order.held_from,
    )


def address_set(order: Order, previous: Address | None, actor: Actor, now: datetime) -> ev.OrderAddressSet:
    return ev.OrderAddressSet(
        **_base(order, actor, now), address=address_data(order.shipping_address), previous=address_data(previous)
    )


def payment_method_set(
    order: Order, previous: PaymentMethodChoice | None, actor: Actor, now: datetime
) -> ev.OrderPaymentMethodSet:
    return ev.OrderPaymentMethodSet(
        **_base(order, actor, now),
        method=order.payment_method,
        paid=order.paid_at is not None,
        paid_at=order.paid_at,
        previous_method=previous,
    )


def customer_note_set(order: Order, skipped: bool, actor: Actor, now: datetime) -> ev.OrderCustomerNoteSet:
    return ev.OrderCustomerNoteSet(**_base(order, actor, now), note=order.customer_note, skipped=skipped)


def customer_changed(order: Order, previous: Customer, actor: Actor, now: datetime) -> ev.OrderCustomerChanged:
    return ev.OrderCustomerChanged(
        **_base(order, actor, now), customer=customer_data(order.customer), previous=customer_data(previous)
    )


def note_added(order: Order, note_id: UUID, text: str, actor: Actor, now: datetime) -> ev.OrderNoteAdded:
    return ev.OrderNoteAdded(**_base(order, actor, now), note_id=note_id, text=text)


def note_edited(
    order: Order, note_id: UUID, text: str, previous_text: str, actor: Actor, now: datetime
) -> ev.OrderNoteEdited:
    return ev.OrderNoteEdited(**_base(order, actor, now), note_id=note_id, text=text, previous_text=previous_text)


def note_deleted(order: Order, note_id: UUID, actor: Actor, now: datetime) -> ev.OrderNoteDeleted:
    return ev.OrderNoteDeleted(**_base(order, actor, now), note_id=note_id)
