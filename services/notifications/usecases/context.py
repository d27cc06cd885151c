"""The template context (n-design, "Template context"): what a message's template may say, built from the order
copy, the store's identity and the event that raised the message. Fixed when the event arrives and stored with
the message, so a retry days later says what was true then."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from services.fulfillment.contracts.vocabulary import SHIPMENT_LABELS, ShipmentStatus
from services.notifications.settings import NotificationSettings
from services.orders.contracts.schemas import Stage
from services.orders.contracts.stages import STAGE_LABELS
from shared.money import format_amount


def money(amount: Any, currency: str) -> str:
    """"44.535 TND": the currency's places, then its code."""
    return f"{format_amount(Decimal(str(amount)), currency)} {currency}"


def stage_label(stage: str | None) -> str | None:
    if stage is None:
        return None
    try:
        return STAGE_LABELS[Stage(stage)]
    except ValueError:
        return stage


def shipment_label(status: str | None) -> str | None:
    if status is None:
        return None
    try:
        return SHIPMENT_LABELS[ShipmentStatus(status)]
    except ValueError:
        return status


def order_context(order: Mapping[str, Any], settings: NotificationSettings) -> dict[str, Any]:
    """``order``, ``customer``, ``store`` and ``test``: every kind's templates may use them."""
    currency = order["currency"]
    customer = order["customer"] or {}
    name = customer.get("name") or ""
    address = order.get("address")
    placed_at = order["placed_at"]
    return {
        "order": {
            "id": str(order["order_id"]), "number": order["number"],
            "placed_at": placed_at.isoformat() if hasattr(placed_at, "isoformat") else str(placed_at),
            "channel": order["channel"], "stage": order["stage"], "stage_label": stage_label(order["stage"]),
            "currency": currency, "total": money(order["total"], currency),
            "items": [{"sku": i["sku"], "name": i["name"], "quantity": i["quantity"],
                       "line_total": money(i["line_total"], currency)} for i in order["items"]],
            "shipping_address": {k: address.get(k) for k in ("line1", "line2", "city", "region", "postal_code",
                                                             "country")} if address else None,
        },
        "customer": {"name": name, "first_name": name.split()[0] if name.split() else name,
                     "phone": customer.get("phone"), "email": customer.get("email")},
        "store": {"name": settings.store_name, "email": settings.store_email, "phone": settings.store_phone},
        "test": bool(order["test"]),
    }


def _shipment(s: Mapping[str, Any]) -> dict[str, Any]:
    return {"number": s.get("number"), "carrier": s.get("carrier"), "tracking_number": s.get("tracking_number"),
            "tracking_url": s.get("tracking_url"), "expected_delivery": s.get("expected_delivery"),
            "status": s.get("status"), "status_label": shipment_label(s.get("status")),
            "shipping_point": s.get("shipping_point")}


def kind_context(kind: str, data: Mapping[str, Any], order: Mapping[str, Any]) -> dict[str, Any]:
    """What the event adds for its kind (the names of ``NotificationKind.variables``). ``data``: the event's
    data as JSON."""
    currency = data.get("currency") or order["currency"]
    if kind == "order_stage_changed":
        return {"from_stage": data.get("from_stage"), "to_stage": data.get("to_stage"),
                "to_stage_label": stage_label(data.get("to_stage")), "reason": data.get("reason")}
    if kind == "payment_link":
        return {"payment_url": data.get("url"), "amount": money(data["amount"], currency),
                "expires_at": data.get("expires_at")}
    if kind == "payment_received":
        return {"amount": money(data["amount"], currency), "method": data.get("method")}
    if kind == "payment_failed":
        return {"amount": money(data["amount"], currency), "reason": data.get("decline_code")}
    if kind == "refund_completed":
        return {"amount": money(data["amount"], currency), "reference": data.get("reference")}
    if kind == "shipment_created":
        return {"shipment": _shipment(data["shipment"])}
    if kind == "shipment_updated":
        status = data.get("to_status") or data["shipment"].get("status")
        return {"shipment": _shipment(data["shipment"]), "status": status, "status_label": shipment_label(status)}
    if kind == "return_recorded":
        names = {i["sku"]: i["name"] for i in order["items"]}
        return {"lines": [{"sku": ln["sku"], "name": names.get(ln["sku"], ln["sku"]), "quantity": ln["quantity"]}
                          for ln in data.get("lines", [])]}
    return {}
