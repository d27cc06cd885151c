"""Who may do what: the permissions, the roles that hold them, and the ONE table mapping every authenticated
route of the HTTP API to the permission it needs (``ROUTE_PERMISSIONS``). Pure data and functions, no I/O.

The server is the truth: ``routing.authenticated`` checks the caller's role against this table on every
request (a staff member signed in to the dashboard, or an API key: keys have a role too). The dashboard only
hides what the server would refuse, from the ``permissions`` list of ``GET /api/v1/session``.

A route missing from the table is refused for everyone but owners (safe by default), and
``tests/unit/test_permissions.py`` fails for any route of the app that has no row: a new route adds its row
here, keyed by ``(METHOD, path template)`` exactly as the route is declared (``/api/v1/orders/{ref}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# ------------------------------------------------------------------------------------------ permissions
ORDERS_READ: Final = "orders.read"
ORDERS_CREATE: Final = "orders.create"
ORDERS_CHANGE: Final = "orders.change"  # transitions, notes, customer, address
PAYMENTS_RECORD: Final = "payments.record"
PAYMENTS_REFUND: Final = "payments.refund"
FULFILLMENT_FULFIL: Final = "fulfillment.fulfil"  # shipments, pack, labels, returns, reservations
STOCK_MANAGE: Final = "stock.manage"
NOTIFICATIONS_MANAGE: Final = "notifications.manage"  # templates, notification settings
VIEWS_MANAGE: Final = "views.manage"  # saved views
STAFF_MANAGE: Final = "staff.manage"
APIKEYS_MANAGE: Final = "apikeys.manage"

PERMISSIONS: Final[tuple[str, ...]] = (
    ORDERS_READ, ORDERS_CREATE, ORDERS_CHANGE, PAYMENTS_RECORD, PAYMENTS_REFUND, FULFILLMENT_FULFIL,
    STOCK_MANAGE, NOTIFICATIONS_MANAGE, VIEWS_MANAGE, STAFF_MANAGE, APIKEYS_MANAGE,
)

#: Not a permission: any signed-in caller (reading one's own session, signing out).
SIGNED_IN: Final = "signed_in"

# ------------------------------------------------------------------------------------------------ roles
ROLES: Final[tuple[str, ...]] = ("owner", "staff", "viewer")

ROLE_PERMISSIONS: Final[Mapping[str, frozenset[str]]] = {
    "viewer": frozenset({ORDERS_READ}),
    "staff": frozenset(PERMISSIONS) - {STAFF_MANAGE, APIKEYS_MANAGE, NOTIFICATIONS_MANAGE},
    "owner": frozenset(PERMISSIONS),
}

# ------------------------------------------------------------------------------------------------ routes
_V1 = "/api/v1"

ROUTE_PERMISSIONS: Final[Mapping[tuple[str, str], str]] = {
    # the caller's own session
    ("GET", f"{_V1}/session"): SIGNED_IN,
    ("DELETE", f"{_V1}/session"): SIGNED_IN,
    # staff users and API keys
    ("GET", f"{_V1}/staff"): STAFF_MANAGE,
    ("POST", f"{_V1}/staff"): STAFF_MANAGE,
    ("PATCH", f"{_V1}/staff/{{user_id}}"): STAFF_MANAGE,
    ("DELETE", f"{_V1}/staff/{{user_id}}"): STAFF_MANAGE,
    ("GET", f"{_V1}/apikeys"): APIKEYS_MANAGE,
    ("POST", f"{_V1}/apikeys"): APIKEYS_MANAGE,
    ("DELETE", f"{_V1}/apikeys/{{key_id}}"): APIKEYS_MANAGE,
    # orders
    ("GET", f"{_V1}/orders"): ORDERS_READ,
    ("GET", f"{_V1}/orders/{{ref}}"): ORDERS_READ,
    ("GET", f"{_V1}/stages"): ORDERS_READ,
    ("GET", f"{_V1}/orders/{{ref}}/timeline"): ORDERS_READ,
    ("POST", f"{_V1}/orders"): ORDERS_CREATE,
    ("POST", f"{_V1}/test-orders"): ORDERS_CREATE,
    ("POST", f"{_V1}/orders/{{ref}}/transitions"): ORDERS_CHANGE,
    ("PUT", f"{_V1}/orders/{{ref}}/address"): ORDERS_CHANGE,
    ("PUT", f"{_V1}/orders/{{ref}}/payment-method"): ORDERS_CHANGE,
    ("PUT", f"{_V1}/orders/{{ref}}/customer-note"): ORDERS_CHANGE,
    ("PUT", f"{_V1}/orders/{{ref}}/customer"): ORDERS_CHANGE,
    ("POST", f"{_V1}/orders/{{ref}}/notes"): ORDERS_CHANGE,
    ("PATCH", f"{_V1}/orders/{{ref}}/notes/{{note_id}}"): ORDERS_CHANGE,
    ("DELETE", f"{_V1}/orders/{{ref}}/notes/{{note_id}}"): ORDERS_CHANGE,
    # payments
    ("GET", f"{_V1}/orders/{{ref}}/payments"): ORDERS_READ,
    ("GET", f"{_V1}/payments/manual-refunds"): ORDERS_READ,
    ("POST", f"{_V1}/orders/{{ref}}/payments/manual"): PAYMENTS_RECORD,
    ("POST", f"{_V1}/orders/{{ref}}/payments/link"): PAYMENTS_RECORD,
    ("POST", f"{_V1}/orders/{{ref}}/payments/capture"): PAYMENTS_RECORD,
    ("POST", f"{_V1}/orders/{{ref}}/refunds/preview"): PAYMENTS_REFUND,
    ("POST", f"{_V1}/orders/{{ref}}/refunds"): PAYMENTS_REFUND,
    ("POST", f"{_V1}/orders/{{ref}}/refunds/paid-out"): PAYMENTS_REFUND,
    # fulfillment
    ("GET", f"{_V1}/orders/{{ref}}/fulfillment"): ORDERS_READ,
    ("GET", f"{_V1}/fulfillment/statuses"): ORDERS_READ,
    ("GET", f"{_V1}/shipments/{{shipment_id}}"): ORDERS_READ,
    ("GET", f"{_V1}/orders/{{ref}}/invoice.{{fmt}}"): ORDERS_READ,
    ("GET", f"{_V1}/orders/{{ref}}/details.{{fmt}}"): ORDERS_READ,
    ("GET", f"{_V1}/shipments/{{shipment_id}}/packing-slip.{{fmt}}"): ORDERS_READ,
    ("GET", f"{_V1}/shipments/{{shipment_id}}/label.pdf"): ORDERS_READ,
    ("POST", f"{_V1}/orders/{{ref}}/fulfillment/pack"): FULFILLMENT_FULFIL,
    ("POST", f"{_V1}/orders/{{ref}}/fulfillment/reserve"): FULFILLMENT_FULFIL,
    ("POST", f"{_V1}/orders/{{ref}}/shipments"): FULFILLMENT_FULFIL,
    ("POST", f"{_V1}/orders/{{ref}}/shipments/rates"): FULFILLMENT_FULFIL,
    ("POST", f"{_V1}/orders/{{ref}}/shipments/label"): FULFILLMENT_FULFIL,
    ("POST", f"{_V1}/orders/{{ref}}/returns"): FULFILLMENT_FULFIL,
    ("PATCH", f"{_V1}/shipments/{{shipment_id}}"): FULFILLMENT_FULFIL,
    ("POST", f"{_V1}/shipments/{{shipment_id}}/deliver"): FULFILLMENT_FULFIL,
    ("POST", f"{_V1}/shipments/{{shipment_id}}/cancel"): FULFILLMENT_FULFIL,
    # stock
    ("GET", f"{_V1}/stock"): ORDERS_READ,
    ("GET", f"{_V1}/stock/{{sku}}"): ORDERS_READ,
    ("GET", f"{_V1}/stock/{{sku}}/movements"): ORDERS_READ,
    ("PUT", f"{_V1}/stock/{{sku}}"): STOCK_MANAGE,
    ("POST", f"{_V1}/stock/{{sku}}/adjustments"): STOCK_MANAGE,
    ("POST", f"{_V1}/stock/reconcile"): STOCK_MANAGE,
    # notifications and alerts
    ("GET", f"{_V1}/notifications/templates"): ORDERS_READ,
    ("GET", f"{_V1}/notifications/templates/{{kind}}/{{channel}}/{{language}}"): ORDERS_READ,
    ("GET", f"{_V1}/notifications/settings"): ORDERS_READ,
    ("GET", f"{_V1}/notifications/messages"): ORDERS_READ,
    ("GET", f"{_V1}/notifications/messages/{{message_id}}"): ORDERS_READ,
    ("GET", f"{_V1}/notifications/statuses"): ORDERS_READ,
    ("GET", f"{_V1}/orders/{{ref}}/messages"): ORDERS_READ,
    ("GET", f"{_V1}/alerts"): ORDERS_READ,
    ("GET", f"{_V1}/alerts/stream"): ORDERS_READ,
    ("PUT", f"{_V1}/notifications/templates/{{kind}}/{{channel}}/{{language}}"): NOTIFICATIONS_MANAGE,
    ("DELETE", f"{_V1}/notifications/templates/{{kind}}/{{channel}}/{{language}}"): NOTIFICATIONS_MANAGE,
    ("POST", f"{_V1}/notifications/templates/preview"): NOTIFICATIONS_MANAGE,
    ("PUT", f"{_V1}/notifications/settings"): NOTIFICATIONS_MANAGE,
    ("POST", f"{_V1}/notifications/messages/{{message_id}}/resend"): ORDERS_CHANGE,
}


def permissions_of(role: str) -> frozenset[str]:
    """The permissions a role holds (none for an unknown role)."""
    return ROLE_PERMISSIONS.get(role, frozenset())


def required(method: str, path_template: str) -> str | None:
    """The permission a route needs; None: the route has no row, so only owners may call it."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    return ROUTE_PERMISSIONS.get((method, path_template))


def allows(role: str, method: str, path_template: str) -> bool:
    """Whether a caller of ``role`` may call the route."""
    needed = required(method, path_template)
    if needed is None:
        return role == "owner"
    if needed == SIGNED_IN:
        return role in ROLE_PERMISSIONS
    return needed in permissions_of(role)
