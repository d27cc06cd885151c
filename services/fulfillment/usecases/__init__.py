"""The fulfillment use cases: plain functions of a ``Database`` (and the ``CarrierProvider`` port), by concern.

* ``order_events``: reacting to the order's events (copy, reserve at placement, release on cancel), a handler table;
* ``stock``: levels, adjustments, movements, retrying a reservation, reconciliation;
* ``shipments``: Manual Fulfill, Edit Shipment, Mark Delivered, Void/Cancel, Mark Packed, the fulfillment view;
* ``carrier``: rates, buying a label, the label PDF, tracking webhooks;
* ``returns``: Return Order;
* ``documents``: packing slip, invoice, order details (data and rendering);
* ``common``: events, status, stock moves through reservations, errors;
* ``views``: answers built by the contract's models.

The Nameko class (``services.fulfillment.service``) only forwards its entrypoints here.
"""

from services.fulfillment.usecases.carrier import buy_label, carrier_rates, handle_carrier_webhook, shipment_label
from services.fulfillment.usecases.documents import document_data, render_document, render_packing_slips
from services.fulfillment.usecases.order_events import (
    ORDER_EVENT_HANDLERS,
    ORDER_EVENT_TYPES,
    apply_order_event,
    handle_order_event,
    handle_order_events,
)
from services.fulfillment.usecases.returns import record_return
from services.fulfillment.usecases.shipments import (
    cancel_shipment,
    create_shipment,
    edit_shipment,
    get_fulfillment,
    get_shipment,
    mark_delivered,
    mark_packed,
)
from services.fulfillment.usecases.stock import (
    adjust_stock,
    list_stock,
    reconcile,
    reconcile_stock,
    retry_reservation,
    set_stock,
    stock_movements,
)

__all__ = [
    "ORDER_EVENT_HANDLERS", "ORDER_EVENT_TYPES", "adjust_stock", "apply_order_event", "buy_label",
    "cancel_shipment", "carrier_rates", "create_shipment", "document_data", "edit_shipment", "get_fulfillment",
    "get_shipment", "handle_carrier_webhook", "handle_order_event", "handle_order_events", "list_stock",
    "mark_delivered", "mark_packed", "reconcile", "reconcile_stock", "record_return", "render_document",
    "render_packing_slips",
    "retry_reservation", "set_stock", "shipment_label", "stock_movements",
]
