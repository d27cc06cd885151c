"""Answers of the use cases, built by the contract's models (``services.fulfillment.contracts.schemas``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from services.fulfillment import domain, store
from services.fulfillment.contracts.schemas import (
    FulfillmentLineView,
    FulfillmentView,
    MovementView,
    ReturnLine,
    ReturnView,
    ShipmentLineView,
    ShipmentView,
    StockItemView,
    StockLevelView,
    TrackingEventView,
)
from services.fulfillment.contracts.vocabulary import ShipmentKind
from shared.money import quantize

Tx = psycopg.Connection[Any]


def shipment(o: domain.FulfillmentOrder, s: domain.Shipment, tracking: Sequence[Mapping[str, Any]] = ()
             ) -> ShipmentView:
    names = {ln.line_id: ln.name for ln in o.lines}
    manual = s.kind is ShipmentKind.manual
    moves = s.allowed_moves() if manual else []
    return ShipmentView(
        id=s.id, order_id=o.order_id, order_number=o.number, number=s.number, kind=s.kind,
        shipping_point=s.shipping_point, status=s.status, carrier=s.carrier, service=s.service,
        tracking_number=s.tracking_number, tracking_url=s.tracking_url, expected_delivery=s.expected_delivery,
        label_available=bool(s.label_id),
        label_cost=quantize(s.label_cost, s.label_currency) if s.label_cost is not None and s.label_currency else None,
        label_currency=s.label_currency, location=s.location,
        lines=[ShipmentLineView(line_id=ln.line_id, sku=ln.sku, name=names.get(ln.line_id, ""), quantity=ln.quantity)
               for ln in s.lines],
        allowed_statuses=moves, can_edit=manual and bool(moves),
        can_cancel=domain.is_forward(s.status, domain.order.S.canceled),
        can_mark_delivered=manual and domain.is_forward(s.status, domain.order.S.delivered),
        created_at=s.created_at, updated_at=s.updated_at,
        tracking=[TrackingEventView(status=t["status"], at=t["at"], description=t["description"],
                                    location=t["location"], source=t["source"], applied=t["applied"])
                  for t in tracking],
    )


def shipment_with_tracking(tx: Tx, o: domain.FulfillmentOrder, s: domain.Shipment) -> ShipmentView:
    return shipment(o, s, store.tracking_of(tx, [s.id])[s.id])


def return_view(o: domain.FulfillmentOrder, r: domain.OrderReturn) -> ReturnView:
    return ReturnView(
        id=r.id, order_id=o.order_id, reason=r.reason, actor=r.actor, at=r.at,
        lines=[ReturnLine(line=ln.line_id, quantity=ln.quantity, restock=ln.restock, location=ln.location)
               for ln in r.lines],
    )


def fulfillment(tx: Tx, o: domain.FulfillmentOrder) -> FulfillmentView:
    tracking = store.tracking_of(tx, [s.id for s in o.shipments])
    why = o.why_not_fulfill()
    return FulfillmentView(
        order_id=o.order_id, order_number=o.number, order_stage=o.stage, status=o.status, packed=o.packed,
        can_fulfill=why is None, why_not=why, reservation=o.reservation,  # type: ignore[arg-type]
        lines=[
            FulfillmentLineView(
                line_id=c.line.line_id, sku=c.line.sku, name=c.line.name, ordered=c.ordered,
                in_open_shipments=c.in_open_shipments, handed_over=c.handed_over, delivered=c.delivered,
                returned=c.returned, unfulfilled=c.unfulfilled, returnable=c.returnable,
                stock_tracked=c.line.sku in o.tracked_skus, reserved=max(0, o.reserved.get(c.line.line_id, 0)),
            )
            for c in o.counts()
        ],
        shipments=[shipment(o, s, tracking[s.id]) for s in o.shipments],
        returns=[return_view(o, r) for r in o.returns],
    )


def stock_items(skus: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[StockItemView]:
    out = []
    for sku in skus:
        levels = [r for r in rows if r["sku"] == sku]
        views = [StockLevelView(location=r["location"], on_hand=r["on_hand"], reserved=r["reserved"],
                                available=max(0, r["on_hand"] - r["reserved"]), updated_at=r["updated_at"])
                 for r in levels]
        on_hand = sum(v.on_hand for v in views)
        reserved = sum(v.reserved for v in views)
        out.append(StockItemView(sku=sku, on_hand=on_hand, reserved=reserved, available=max(0, on_hand - reserved),
                                 locations=views))
    return out


def movement(r: Mapping[str, Any]) -> MovementView:
    return MovementView(
        id=r["movement_id"], sku=r["sku"], location=r["location"], delta_on_hand=r["delta_on_hand"],
        delta_reserved=r["delta_reserved"], on_hand_after=r["on_hand_after"], reserved_after=r["reserved_after"],
        reason=r["reason"], order_id=r["order_id"], order_number=r["order_number"], actor=r["actor"], at=r["at"],
    )
