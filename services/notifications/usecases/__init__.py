"""The notifications use cases: plain functions of a ``Database`` (and the channel ports, ``Channels``).

* ``events``: reacting to orders', payments' and fulfillment's events (order copy, queued messages), a handler
  table per source service;
* ``sending``: the sender (claim, render, send with the idempotency key, record; retries, fallback, alerts);
* ``receipts``: provider webhooks (delivery receipts forward only, inbound WhatsApp opens the window);
* ``templates``: list, save (validated), reset, preview;
* ``preferences``: the store's notification settings;
* ``messages``: list, get, resend;
* ``context``: the template context;
* ``common``: the ports together, status announcements, staff alerts (``raise_alert``);
* ``alerts``, ``timeline``: staff alerts and the order timeline (another module set).

The Nameko class (``services.notifications.service``) only forwards its entrypoints here.
"""

from services.notifications.usecases import alerts, timeline
from services.notifications.usecases.common import Channels, raise_alert
from services.notifications.usecases.events import (
    FULFILLMENT_EVENT_TYPES,
    HANDLERS,
    ORDER_EVENT_TYPES,
    PAYMENT_EVENT_TYPES,
    handle_events,
)
from services.notifications.usecases.messages import get_message, list_messages, resend_message
from services.notifications.usecases.preferences import get_settings, update_settings
from services.notifications.usecases.receipts import handle_provider_webhook
from services.notifications.usecases.sending import Sender, Templates, send_due
from services.notifications.usecases.templates import (
    list_templates,
    preview_template,
    reset_template,
    save_template,
)

__all__ = [
    "alerts", "timeline",
    "FULFILLMENT_EVENT_TYPES", "HANDLERS", "ORDER_EVENT_TYPES", "PAYMENT_EVENT_TYPES", "Channels", "Sender",
    "Templates", "get_message", "get_settings", "handle_events", "handle_provider_webhook", "list_messages",
    "list_templates", "preview_template", "raise_alert", "resend_message", "reset_template", "save_template",
    "send_due", "update_settings",
]
