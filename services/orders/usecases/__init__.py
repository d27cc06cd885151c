"""The orders use cases: plain functions of a ``Database``, split by concern.

* ``placement``: placing an order (with its Idempotency-Key) and a batch of placements;
* ``changes``: every change to an order through one path, :func:`change` (stage transitions, address,
  payment method, customer, customer note, staff notes);
* ``queries``: one order's detail, the order list, the stage machine;
* ``abandonment``: the timer's job, placed orders without address or payment become abandoned;
* ``payment_events``: reacting to the payments service's events, a table of handlers by event model;
* ``fulfillment_events``: the same for the fulfillment service's (the stage follows the fulfillment status);
* ``common``: saving order, history and events in one transaction, the automatic confirmation, the detail;
* ``views``: answers built by the contract's models.

The store maps the aggregate to and from its stored document in ``services.orders.document``. The Nameko
class (``services.orders.service``) only forwards its entrypoints here.
"""

from services.orders.usecases.abandonment import abandon_stale_orders
from services.orders.usecases.changes import (
    add_note,
    change,
    change_customer,
    delete_note,
    edit_note,
    set_address,
    set_customer_note,
    set_payment_method,
    transition,
)
from services.orders.usecases.fulfillment_events import (
    FULFILLMENT_EVENT_HANDLERS,
    FULFILLMENT_EVENT_TYPES,
    apply_fulfillment_event,
    handle_fulfillment_event,
    handle_fulfillment_events,
)
from services.orders.usecases.payment_events import (
    PAYMENT_EVENT_HANDLERS,
    PAYMENT_EVENT_TYPES,
    apply_payment_event,
    handle_payment_event,
    handle_payment_events,
)
from services.orders.usecases.placement import place_order, place_orders
from services.orders.usecases.queries import count_orders, get_order, list_orders, status_machine

__all__ = [
    "FULFILLMENT_EVENT_HANDLERS",
    "FULFILLMENT_EVENT_TYPES",
    "PAYMENT_EVENT_HANDLERS",
    "PAYMENT_EVENT_TYPES",
    "abandon_stale_orders",
    "add_note",
    "apply_fulfillment_event",
    "apply_payment_event",
    "change",
    "change_customer",
    "delete_note",
    "edit_note",
    "get_order",
    "handle_fulfillment_event",
    "handle_fulfillment_events",
    "handle_payment_event",
    "handle_payment_events",
    "list_orders",
    "count_orders",
    "place_order",
    "place_orders",
    "set_address",
    "set_customer_note",
    "set_payment_method",
    "status_machine",
    "transition",
]
