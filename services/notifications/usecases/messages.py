"""Messages over the API: list (by order, status, channel; newest first, keyset pages), one with its history,
and staff's resend of a failed one (back to ``queued`` with a new idempotency key: the provider must not answer
the failure again)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from services.notifications import domain, store
from services.notifications.contracts.schemas import MessageList, MessageView
from services.notifications.contracts.vocabulary import MessageChannel, MessageStatus
from services.notifications.usecases.common import Tx, announce, now, read
from shared import outbox
from shared.db import Database
from shared.errors import InvalidRequest, NotAllowedInThisState, NotFound, field_error


def _uuid(value: Any, field: str, location: str = "path") -> UUID:
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise InvalidRequest(f"{field}: not a UUID", errors=[field_error(field, "not a UUID", "invalid", location)]
                             ) from None


def message_view(row: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    return MessageView(
        id=row["id"], order_id=row["order_id"], order_number=row["number"], kind=row["kind"],
        channel=row["channel"], recipient=row["recipient"], language=row["language"], status=row["status"],
        attempts=row["attempts"], provider_message_id=row["provider_message_id"], reason=row["reason"],
        test=row["test"], redirected=row["redirected"], subject=row["subject"], text=row["text"],
        created_at=row["created_at"], updated_at=row["updated_at"], history=history,
    ).model_dump(mode="json")


def list_messages(db: Database, order_id: Any = None, status: str | None = None, channel: str | None = None,
                  limit: int = 50, after: str | None = None) -> dict[str, Any]:
    if status is not None and status not in {s.value for s in MessageStatus}:
        raise InvalidRequest(f"unknown status '{status}'", errors=[field_error("status", "not a message status",
                                                                               "invalid", "query")])
    if channel is not None and channel not in {c.value for c in MessageChannel}:
        raise InvalidRequest(f"unknown channel '{channel}'", errors=[field_error("channel", "not a channel",
                                                                                 "invalid", "query")])
    limit = max(1, min(int(limit), 200))
    cursor = None
    if after:
        at, _, mid = after.partition("|")
        try:
            cursor = (datetime.fromisoformat(at), UUID(mid))
        except ValueError:
            raise InvalidRequest("after: not a cursor of this list",
                                 errors=[field_error("after", "not a cursor of this list", "invalid", "query")]
                                 ) from None
    oid = _uuid(order_id, "order_id", "query") if order_id is not None else None
    with read(db) as tx:
        rows = store.list_messages(tx, order_id=oid, status=status, channel=channel, limit=limit + 1, after=cursor)
        page = rows[:limit]
        histories = store.history_of(tx, [r["id"] for r in page])
    last = page[-1] if len(rows) > limit else None
    return MessageList(
        items=[message_view(r, histories[r["id"]]) for r in page],
        next_after=f"{last['created_at'].isoformat()}|{last['id']}" if last else None,
    ).model_dump(mode="json")


def _get(tx: Tx, message_id: UUID, for_update: bool = False) -> dict[str, Any]:
    row = store.get_message(tx, message_id, for_update=for_update)
    if row is None:
        raise NotFound(f"no message {message_id}", message_id=str(message_id))
    return row


def get_message(db: Database, message_id: Any) -> dict[str, Any]:
    mid = _uuid(message_id, "message_id")
    with read(db) as tx:
        row = _get(tx, mid)
        return message_view(row, store.history_of(tx, [mid])[mid])


def resend_message(db: Database, message_id: Any, actor: Any) -> dict[str, Any]:
    """A failed message queued again (now), with a fresh idempotency key."""
    mid = _uuid(message_id, "message_id")
    at = now()
    with db.transaction() as tx, outbox.buffered(tx):
        row = _get(tx, mid, for_update=True)
        if not domain.can_move(row["status"], MessageStatus.queued):
            raise NotAllowedInThisState(f"only a failed message can be resent; this one is {row['status']}",
                                        field="status", status_now=row["status"])
        resends = row["resends"] + 1
        store.update_message(tx, mid, at, status=MessageStatus.queued.value, attempts=0, next_attempt_at=at,
                             claimed_until=None, reason=None, resends=resends,
                             idempotency_key=domain.resend_key(mid, resends))
        who = (actor or {}).get("name") if isinstance(actor, dict) else None
        announce(tx, row, row["status"], MessageStatus.queued.value, f"resent by {who or 'staff'}", at, "staff")
    return get_message(db, mid)
