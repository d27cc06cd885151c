"""The order's stored form: the ``doc`` JSON column mapped to and from the domain's ``Order``, field by field.

The document is written out explicitly (not a dump of some model) so that the domain types, the API views
and the stored layout can each change on their own; a change to the layout is a change here (and, for old
rows, a reader that accepts both). Money is written as decimal strings, times as ISO 8601, value objects
(customer, address, actor) as their contract JSON. Only the store uses this module.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from services.fulfillment.contracts.vocabulary import FulfillmentStatus
from services.orders.contracts.schemas import Actor, Address, Channel, Customer, PaymentMethodChoice, Stage
from services.orders.domain import HistoryRecord, LineItem, Order, StaffNote, Totals

# ------------------------------------------------------------------------------------------------ writing


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _actor(actor: Actor | None) -> dict[str, Any] | None:
    return None if actor is None else actor.model_dump(mode="json")


def _note(note: StaffNote) -> dict[str, Any]:
    return {
        "id": str(note.id),
        "text": note.text,
        "author": _actor(note.author),
        "created_at": _time(note.created_at),
        "updated_at": _time(note.updated_at),
        "updated_by": _actor(note.updated_by),
        "deleted": note.deleted,
        "deleted_at": _time(note.deleted_at),
        "deleted_by": _actor(note.deleted_by),
    }


def to_doc(order: Order) -> dict[str, Any]:
    """The order as the JSON object stored in ``orders.doc``."""
    t = order.totals
    return {
        "id": str(order.id),
        "number": order.number,
        "channel": order.channel.value,
        "stage": order.stage.value,
        "held_from": order.held_from.value if order.held_from else None,
        "customer": order.customer.model_dump(mode="json"),
        "items": [
            {
                "sku": i.sku,
                "name": i.name,
                "quantity": i.quantity,
                "unit_price": str(i.unit_price),
                "line_total": str(i.line_total),
            }
            for i in order.items
        ],
        "currency": order.currency,
        "totals": {
            "subtotal": str(t.subtotal),
            "shipping": str(t.shipping),
            "discount": str(t.discount),
            "tax": str(t.tax),
            "total": str(t.total),
        },
        "shipping_address": None if order.shipping_address is None else order.shipping_address.model_dump(mode="json"),
        "payment_method": order.payment_method.value if order.payment_method else None,
        "paid_at": _time(order.paid_at),
        "payment_status": order.payment_status,
        "payment_authorized": order.payment_authorized,
        "customer_note": order.customer_note,
        "customer_note_skipped": order.customer_note_skipped,
        "notes": [_note(n) for n in order.notes],
        "fulfillment_status": order.fulfillment_status.value,
        "shipments": [dict(s) for s in order.shipments],
        "test": order.test,
        "external_ref": order.external_ref,
        "placed_at": _time(order.placed_at),
        "stage_changed_at": _time(order.stage_changed_at),
        "created_at": _time(order.created_at),
        "updated_at": _time(order.updated_at),
        "version": order.version,
        "history_seq": order.history_seq,
    }


def to_json(order: Order) -> str:
    return json.dumps(to_doc(order), separators=(",", ":"))


# ------------------------------------------------------------------------------------------------ reading


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _required_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _parse_actor(value: dict[str, Any] | None) -> Actor | None:
    return None if value is None else Actor.model_validate(value)


def _parse_note(d: dict[str, Any]) -> StaffNote:
    return StaffNote(
        id=UUID(d["id"]),
        text=d["text"],
        author=Actor.model_validate(d["author"]),
        created_at=_required_time(d["created_at"]),
        updated_at=_required_time(d["updated_at"]),
        updated_by=_parse_actor(d.get("updated_by")),
        deleted=bool(d.get("deleted", False)),
        deleted_at=_parse_time(d.get("deleted_at")),
        deleted_by=_parse_actor(d.get("deleted_by")),
    )


def from_doc(d: dict[str, Any]) -> Order:
    """The ``Order`` a stored document describes."""
    t = d["totals"]
    address = d.get("shipping_address")
    return Order(
        id=UUID(d["id"]),
        number=int(d["number"]),
        channel=Channel(d["channel"]),
        stage=Stage(d["stage"]),
        held_from=Stage(d["held_from"]) if d.get("held_from") else None,
        customer=Customer.model_validate(d["customer"]),
        items=tuple(
            LineItem(
                sku=i["sku"],
                name=i["name"],
                quantity=int(i["quantity"]),
                unit_price=Decimal(i["unit_price"]),
                line_total=Decimal(i["line_total"]),
            )
            for i in d["items"]
        ),
        currency=d["currency"],
        totals=Totals(
            subtotal=Decimal(t["subtotal"]),
            shipping=Decimal(t["shipping"]),
            discount=Decimal(t["discount"]),
            tax=Decimal(t["tax"]),
            total=Decimal(t["total"]),
        ),
        shipping_address=None if address is None else Address.model_validate(address),
        payment_method=PaymentMethodChoice(d["payment_method"]) if d.get("payment_method") else None,
        paid_at=_parse_time(d.get("paid_at")),
        payment_status=d.get("payment_status"),
        payment_authorized=bool(d.get("payment_authorized", False)),
        customer_note=d.get("customer_note"),
        customer_note_skipped=bool(d.get("customer_note_skipped", False)),
        notes=tuple(_parse_note(n) for n in d.get("notes", ())),
        fulfillment_status=FulfillmentStatus(d.get("fulfillment_status") or FulfillmentStatus.unfulfilled),
        shipments=tuple(d.get("shipments") or ()),
        test=bool(d.get("test", False)),
        external_ref=d.get("external_ref"),
        placed_at=_required_time(d["placed_at"]),
        stage_changed_at=_required_time(d["stage_changed_at"]),
        created_at=_required_time(d["created_at"]),
        updated_at=_required_time(d["updated_at"]),
        version=int(d.get("version", 1)),
        history_seq=int(d.get("history_seq", 0)),
    )


def from_json(text: str) -> Order:
    return from_doc(json.loads(text))


def history_from_row(row: dict[str, Any]) -> HistoryRecord:
    """One ``order_history`` row (actor and data are JSON columns, already decoded) as a ``HistoryRecord``."""
    return HistoryRecord(
        seq=int(row["seq"]),
        at=row["at"],
        actor=Actor.model_validate(row["actor"]),
        action=row["action"],
        from_stage=Stage(row["from_stage"]) if row["from_stage"] else None,
        to_stage=Stage(row["to_stage"]) if row["to_stage"] else None,
        reason=row["reason"],
        data=row["data"] or {},
    )
