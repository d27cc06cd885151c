"""What the API shows of an order: the domain's ``Order`` mapped to the contract's view models.

The views (``OrderSummary``, ``OrderDetail``, ``NoteView``, ``HistoryEntry``) are the published HTTP/RPC
contract; the aggregate is free to change shape without changing them. A use case returns
``model_dump(mode="json")`` of what these functions build.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.orders.contracts.schemas import (
    HistoryEntry,
    LineItemView,
    NoteView,
    OrderDetail,
    OrderPage,
    OrderSummary,
    ShipmentInfo,
    Totals,
)
from services.orders.domain import HistoryRecord, Order, StaffNote, allowed_targets


def totals_view(order: Order) -> Totals:
    t = order.totals
    return Totals(subtotal=t.subtotal, shipping=t.shipping, discount=t.discount, tax=t.tax, total=t.total)


def _summary_fields(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "number": order.number,
        "display_number": order.display_number,
        "channel": order.channel,
        "stage": order.stage,
        "held_from": order.held_from,
        "customer": order.customer,
        "currency": order.currency,
        "totals": totals_view(order),
        "payment_method": order.payment_method,
        "payment_status": order.payment_status,
        "payment_authorized": order.payment_authorized,
        "paid_at": order.paid_at,
        "test": order.test,
        "fulfillment_status": order.fulfillment_status,
        "item_count": order.item_count,
        "placed_at": order.placed_at,
        "updated_at": order.updated_at,
        "version": order.version,
    }


def order_summary(order: Order) -> OrderSummary:
    """The order card for the list."""
    return OrderSummary(**_summary_fields(order))


def note_view(note: StaffNote) -> NoteView:
    return NoteView(
        id=note.id,
        text=note.text,
        author=note.author,
        created_at=note.created_at,
        updated_at=note.updated_at,
        deleted=note.deleted,
    )


def history_entry(record: HistoryRecord) -> HistoryEntry:
    return HistoryEntry(
        seq=record.seq,
        at=record.at,
        actor=record.actor,
        action=record.action,
        from_stage=record.from_stage,
        to_stage=record.to_stage,
        reason=record.reason,
        data=record.data,
    )


def order_detail(
    order: Order, history: Sequence[HistoryRecord] = (), include_deleted_notes: bool = False
) -> OrderDetail:
    """The order page. ``allowed_transitions`` are the moves a person may choose now."""
    return OrderDetail(
        **_summary_fields(order),
        items=[
            LineItemView(
                sku=i.sku, name=i.name, quantity=i.quantity, unit_price=i.unit_price, line_total=i.line_total
            )
            for i in order.items
        ],
        shipping_address=order.shipping_address,
        shipments=[ShipmentInfo.model_validate(s) for s in order.shipments],
        customer_note=order.customer_note,
        customer_note_skipped=order.customer_note_skipped,
        notes=[note_view(n) for n in order.notes if include_deleted_notes or not n.deleted],
        history=[history_entry(h) for h in sorted(history, key=lambda h: h.seq)],
        allowed_transitions=allowed_targets(order),
    )


def order_page(orders: Sequence[Order], next_cursor: str | None) -> OrderPage:
    """One page of the order list."""
    return OrderPage(items=[order_summary(o) for o in orders], next_cursor=next_cursor)
