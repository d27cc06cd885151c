"""The payments use cases: plain functions of a ``Database`` and a ``PaymentProvider``, split by concern.

* ``payments``: the summary, manual payments, card payment links, staff captures;
* ``webhooks``: provider webhooks, a table of handlers by event type;
* ``refunds``: refund preview and refund, the manual refunds worklist, pay-outs;
* ``saga``: reacting to order events (settle closed orders, capture at the capture stage);
* ``returns``: reacting to fulfillment's returns (the returned units the refund preview offers);
* ``common``: recording money on the aggregate, reporting violations, announcing the status;
* ``views``: answers built by the contract's models.

The Nameko class (``services.payments.service``) only forwards its entrypoints here.
"""

from services.payments.usecases.payments import (
    capture_payment,
    create_payment_link,
    record_manual_payment,
    summary,
)
from services.payments.usecases.refunds import manual_refunds, mark_refund_paid_out, refund, refund_preview
from services.payments.usecases.returns import (
    FULFILLMENT_EVENT_TYPES,
    handle_fulfillment_event,
    handle_fulfillment_events,
)
from services.payments.usecases.saga import (
    ORDER_EVENT_TYPES,
    apply_order_event,
    capture_open_authorizations,
    handle_order_event,
    handle_order_events,
    settle_closed_order,
)
from services.payments.usecases.webhooks import handle_webhook

__all__ = [
    "FULFILLMENT_EVENT_TYPES",
    "ORDER_EVENT_TYPES",
    "apply_order_event",
    "capture_open_authorizations",
    "capture_payment",
    "create_payment_link",
    "handle_fulfillment_event",
    "handle_fulfillment_events",
    "handle_order_event",
    "handle_order_events",
    "handle_webhook",
    "manual_refunds",
    "mark_refund_paid_out",
    "record_manual_payment",
    "refund",
    "refund_preview",
    "settle_closed_order",
    "summary",
]
