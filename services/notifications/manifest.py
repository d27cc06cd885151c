"""The notifications service, as the registry knows it (see ``shared.registry`` and docs/adding-a-service.md).

Its README sections are two tables of ``contracts.vocabulary``: the message status machine and the kinds of
customer notification (with the events that raise them and their template variables).
"""

from __future__ import annotations

from pathlib import Path

from shared.registry import ServiceSpec

SERVICE = ServiceSpec(
    name="notifications",
    nameko_class="services.notifications.service:NotificationsService",
    schema="notifications",
    migrations=Path(__file__).parent / "migrations",
    backbone=True,
    contracts="services.notifications.contracts",
    settings="services.notifications.settings:NotificationSettings",
    docs={
        "message-status": "services.notifications.manifest:message_status_table",
        "notification-kinds": "services.notifications.manifest:notification_kinds_table",
    },
)


def message_status_table() -> str:
    """The README's message status table: the forward-only machine (MESSAGE_TRANSITIONS)."""
    from services.notifications.contracts.vocabulary import tables

    rows = ["| status | may move to | meaning |", "|---|---|---|"]
    for s in tables()["message_statuses"]:
        moves = ", ".join(f"`{t}`" for t in s["allowed"]) or "(final)"
        rows.append(f"| `{s['status']}` | {moves} | {s['description']} |")
    return "\n".join(rows)


def notification_kinds_table() -> str:
    """The README's notification kinds table: what raises each kind and what its templates may use."""
    from services.notifications.contracts.vocabulary import tables

    rows = ["| kind | label | raised by | template variables | on by default |", "|---|---|---|---|---|"]
    for k in tables()["kinds"]:
        events = ", ".join(f"`{e}`" for e in k["events"])
        variables = ", ".join(f"`{v}`" for v in k["variables"])
        rows.append(f"| `{k['kind']}` | {k['label']} | {events} | {variables} | {'yes' if k['default_on'] else 'no'} |")
    rows.append("| `new_order_staff` | New order (to the store) | `order.placed.v1` | `order`, `customer`, `store`, "
                "`test` | yes |")
    return "\n".join(rows)
