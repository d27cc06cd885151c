"""The words fulfillment and its clients share: fulfillment status, shipment status, shipping points, and
the two tables every reader (the service, the README, the API, the dashboard) takes them from.

* ``SHIPMENT_TRANSITIONS``: the shipment status machine. It only moves forward: a tracking update that
  arrives late or twice never moves a shipment back (``SHIPMENT_RANK`` orders the statuses).
* ``FULFILLMENT_RULES``: how an order's fulfillment status is computed from its shipments and quantities.
  First matching row wins. It is never set by hand.

They live in the contract (not the domain) because the gateway, orders, notifications and the dashboard speak
them; the domain evaluates exactly these tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


class FulfillmentStatus(StrEnum):
    """Per order, computed from its shipments and quantities (help center: Order Fulfillment Statuses)."""

    unfulfilled = "unfulfilled"
    dispatched = "dispatched"
    partially_fulfilled = "partially_fulfilled"
    fulfilled = "fulfilled"
    delivered = "delivered"
    picked_up = "picked_up"
    partially_returned = "partially_returned"
    returned = "returned"
    canceled = "canceled"


class ShipmentStatus(StrEnum):
    """Per shipment (help center: Order Shipment Statuses)."""

    awaiting_shipment = "awaiting_shipment"
    shipped = "shipped"
    in_transit = "in_transit"
    out_for_delivery = "out_for_delivery"
    delivered = "delivered"
    delivery_failed = "delivery_failed"
    canceled = "canceled"


class ShippingPoint(StrEnum):
    """Where a manual shipment goes from (help center: Manual Fulfill). ``international`` needs a carrier and
    a tracking number; ``pickup`` is collected by the customer in store and ends in ``picked_up``."""

    local = "local"
    international = "international"
    pickup = "pickup"


class ShipmentKind(StrEnum):
    """``manual``: the merchant's own delivery, editable by hand. ``carrier``: a label bought from a carrier;
    only the carrier's tracking moves it, and cancelling it asks the carrier to void the label."""

    manual = "manual"
    carrier = "carrier"


S = ShipmentStatus

SHIPMENT_TRANSITIONS: dict[ShipmentStatus, frozenset[ShipmentStatus]] = {
    S.awaiting_shipment: frozenset({S.shipped, S.in_transit, S.out_for_delivery, S.delivered, S.delivery_failed,
                                    S.canceled}),
    S.shipped: frozenset({S.in_transit, S.out_for_delivery, S.delivered, S.delivery_failed, S.canceled}),
    S.in_transit: frozenset({S.out_for_delivery, S.delivered, S.delivery_failed, S.canceled}),
    S.out_for_delivery: frozenset({S.delivered, S.delivery_failed}),
    S.delivered: frozenset(),
    S.delivery_failed: frozenset(),
    S.canceled: frozenset(),
}
"""Shipment status -> the statuses it may move to. Forward only; skipping ahead is allowed (a carrier may
report ``delivered`` without ``out_for_delivery``). ``delivered``, ``delivery_failed`` and ``canceled`` are
final for the parcel: a failed parcel comes back to the merchant and its items are shipped again in a NEW
shipment (split delivery), so the failed one stays in the record as it happened."""

SHIPMENT_RANK: dict[ShipmentStatus, int] = {
    S.awaiting_shipment: 0, S.shipped: 1, S.in_transit: 2, S.out_for_delivery: 3,
    S.delivered: 4, S.delivery_failed: 4, S.canceled: 4,
}
"""How far along a shipment is: an update to a status of lower or equal rank is late or a duplicate, and
changes nothing."""

HANDED_OVER: frozenset[ShipmentStatus] = frozenset({S.shipped, S.in_transit, S.out_for_delivery, S.delivered})
"""The parcel has left the merchant: its items count as fulfilled, and their stock is consumed."""

OPEN_SHIPMENT: frozenset[ShipmentStatus] = frozenset({S.awaiting_shipment, S.shipped, S.in_transit,
                                                     S.out_for_delivery})
"""Not finished yet."""

CANCELLABLE_SHIPMENT: frozenset[ShipmentStatus] = frozenset(s for s, t in SHIPMENT_TRANSITIONS.items()
                                                            if S.canceled in t)
"""A shipment may be voided or cancelled only before it is out for delivery; never after delivery."""

SHIPMENT_LABELS: dict[ShipmentStatus, str] = {
    S.awaiting_shipment: "Awaiting Shipment",
    S.shipped: "Shipped",
    S.in_transit: "In transit",
    S.out_for_delivery: "Out for delivery",
    S.delivered: "Delivered",
    S.delivery_failed: "Delivery Failed",
    S.canceled: "Canceled",
}

SHIPMENT_DESCRIPTIONS: dict[ShipmentStatus, str] = {
    S.awaiting_shipment: "The shipment has been created.",
    S.shipped: "The purchased item has been shipped to the delivery company.",
    S.in_transit: "The purchased items are in transit.",
    S.out_for_delivery: "The purchased items are on the way to reach the customer.",
    S.delivered: "The purchased item has been delivered to the target destination.",
    S.delivery_failed: "The delivery has failed; the parcel returns to the merchant and its items can be "
                       "shipped again.",
    S.canceled: "The shipment has been canceled; its items are unfulfilled again.",
}

F = FulfillmentStatus

FULFILLMENT_LABELS: dict[FulfillmentStatus, str] = {
    F.unfulfilled: "Unfulfilled",
    F.dispatched: "Dispatched",
    F.partially_fulfilled: "Partially Fulfilled",
    F.fulfilled: "Fulfilled",
    F.delivered: "Delivered",
    F.picked_up: "Picked Up",
    F.partially_returned: "Partially Returned",
    F.returned: "Returned",
    F.canceled: "Canceled",
}

FULFILLMENT_DESCRIPTIONS: dict[FulfillmentStatus, str] = {
    F.unfulfilled: "The order has been placed.",
    F.dispatched: "The purchased item has been packed and is ready to be handed to the delivery company.",
    F.partially_fulfilled: "Some of the purchased items have been handed to the delivery company.",
    F.fulfilled: "The order has been handed to the delivery company.",
    F.delivered: "The purchased item has been delivered to the target destination.",
    F.picked_up: "The purchased item has been delivered and picked up by the customer from the self pickup point.",
    F.partially_returned: "Some of the purchased items have been sent back by the customer after delivery.",
    F.returned: "The purchased item has been sent back by the customer after delivery.",
    F.canceled: "The order has been canceled by the merchant or by the customer's request.",
}

Level = Literal["none", "some", "all", "any"]
"""How many of the order's units a quantity covers: ``none`` (0), ``some`` (between), ``all`` (every unit
ordered), ``any`` (the row does not look at it)."""


@dataclass(frozen=True)
class FulfillmentRule:
    """One row of ``FULFILLMENT_RULES``. The order's units are counted per state:

    * ``handed_over``: units in shipments that left the merchant (``HANDED_OVER``), delivered ones included;
    * ``delivered``: units in delivered shipments;
    * ``returned``: units returned by the customer (a return recorded by staff);
    * ``packed``: an open shipment awaits the carrier or staff marked the order packed;
    * ``pickup_only``: every delivered unit was collected in store (shipping point ``pickup``);
    * ``order_cancelled``: the order was cancelled, rejected or abandoned.
    """

    status: FulfillmentStatus
    why: str
    order_cancelled: bool | None = None
    returned: Level = "any"
    delivered: Level = "any"
    handed_over: Level = "any"
    packed: bool | None = None
    pickup_only: bool | None = None


FULFILLMENT_RULES: tuple[FulfillmentRule, ...] = (
    FulfillmentRule(F.canceled, "the order was cancelled before anything left", order_cancelled=True,
                    handed_over="none", returned="none"),
    FulfillmentRule(F.returned, "every unit ordered came back", returned="all"),
    FulfillmentRule(F.partially_returned, "some units came back", returned="some"),
    FulfillmentRule(F.picked_up, "every unit delivered, all collected in store", delivered="all", pickup_only=True),
    FulfillmentRule(F.delivered, "every unit delivered", delivered="all"),
    FulfillmentRule(F.fulfilled, "every unit handed over (some may still be on the way)", handed_over="all"),
    FulfillmentRule(F.partially_fulfilled, "some units handed over, others not yet (or shipped again after a "
                    "failed delivery)", handed_over="some"),
    FulfillmentRule(F.dispatched, "nothing handed over yet, but packed (an open shipment or marked packed)",
                    handed_over="none", packed=True),
    FulfillmentRule(F.unfulfilled, "nothing packed or handed over"),
)
"""The order's fulfillment status: the first row whose every condition holds. The last row always holds."""


def _check_tables() -> None:
    checks = {
        "every shipment status has a row": set(SHIPMENT_TRANSITIONS) == set(ShipmentStatus) == set(SHIPMENT_RANK),
        "shipments only move forward": all(SHIPMENT_RANK[t] > SHIPMENT_RANK[s]
                                           for s, ts in SHIPMENT_TRANSITIONS.items() for t in ts),
        "never cancelled after delivery": S.canceled not in SHIPMENT_TRANSITIONS[S.delivered],
        "every status described": set(SHIPMENT_LABELS) == set(SHIPMENT_DESCRIPTIONS) == set(ShipmentStatus)
        and set(FULFILLMENT_LABELS) == set(FULFILLMENT_DESCRIPTIONS) == set(FulfillmentStatus),
        "every fulfillment status reachable": {r.status for r in FULFILLMENT_RULES} == set(FulfillmentStatus),
        "the last rule always holds":
            FULFILLMENT_RULES[-1] == FulfillmentRule(F.unfulfilled, FULFILLMENT_RULES[-1].why),
    }
    broken = [rule for rule, ok in checks.items() if not ok]
    if broken:
        raise AssertionError(f"fulfillment vocabulary tables break: {', '.join(broken)}")


_check_tables()


def status_tables() -> dict[str, Any]:
    """Both tables as JSON, for ``GET /api/v1/fulfillment/statuses``, the README and the dashboard."""
    return {
        "fulfillment_statuses": [
            {"status": s.value, "label": FULFILLMENT_LABELS[s], "description": FULFILLMENT_DESCRIPTIONS[s]}
            for s in FulfillmentStatus
        ],
        "fulfillment_rules": [
            {
                "status": r.status.value, "why": r.why,
                "when": {k: v for k, v in (("order_cancelled", r.order_cancelled), ("returned", r.returned),
                                           ("delivered", r.delivered), ("handed_over", r.handed_over),
                                           ("packed", r.packed), ("pickup_only", r.pickup_only))
                         if v is not None and v != "any"},
            }
            for r in FULFILLMENT_RULES
        ],
        "shipment_statuses": [
            {"status": s.value, "label": SHIPMENT_LABELS[s], "description": SHIPMENT_DESCRIPTIONS[s],
             "allowed": [t.value for t in ShipmentStatus if t in SHIPMENT_TRANSITIONS[s]],
             "cancellable": s in CANCELLABLE_SHIPMENT}
            for s in ShipmentStatus
        ],
    }
