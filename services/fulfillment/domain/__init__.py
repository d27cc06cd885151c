"""The fulfillment domain: pure rules, no I/O.

* ``order``: the order as fulfillment knows it (lines, shipments, returns), quantities per line, the fulfillment
  status from ``FULFILLMENT_RULES``, shipment moves on ``SHIPMENT_TRANSITIONS``, what may be fulfilled or
  returned, and why not in the merchant's words;
* ``stock``: allocation of an order's units across locations (all or nothing), consumption at hand-over,
  reconciliation drift.
"""

from services.fulfillment.domain.order import (
    CLOSED_STAGES,
    FULFILLABLE_STAGES,
    PACKABLE_STAGES,
    Consumed,
    Facts,
    FulfillmentOrder,
    LineCounts,
    OrderLine,
    OrderReturn,
    Refused,
    ReturnLine,
    Shipment,
    ShipmentLine,
    check_cancel,
    check_manual_edit,
    check_move,
    evaluate,
    is_forward,
    level,
    line_units,
    rule_holds,
    tracking_applies,
)
from services.fulfillment.domain.stock import Allocation, Need, Plan, Shortage, allocate, consume, drift, location_order

__all__ = [
    "CLOSED_STAGES", "FULFILLABLE_STAGES", "PACKABLE_STAGES", "Allocation", "Consumed", "Facts",
    "FulfillmentOrder", "LineCounts", "Need", "OrderLine", "OrderReturn", "Plan", "Refused", "ReturnLine",
    "Shipment", "ShipmentLine", "Shortage", "allocate", "check_cancel", "check_manual_edit", "check_move",
    "consume", "drift", "evaluate", "is_forward", "level", "line_units", "location_order", "rule_holds",
    "tracking_applies",
]
