"""What every orders use case does the same way: save the order, its history and its events together, fold
in the automatic placed → confirmed move, answer with the order's detail, and fingerprint a placement.

Every change follows one path: lock and load the order (``store.load(..., for_update=True)``), let the domain
decide (an ``Outcome``), then :func:`save` writes the order, its history entries and its events (to the
outbox) in the same transaction, so a change is never saved without its events nor announced without being
saved.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from pydantic import BaseModel

from services.orders import domain, store
from services.orders.usecases import views
from shared import outbox

SERVICE = "orders"
Tx = psycopg.Connection[Any]


def now() -> datetime:
    return datetime.now(UTC)


def save(
    tx: Tx,
    outcome: domain.Outcome,
    *,
    previous_version: int | None,
    causation_id: str,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> None:
    """Write the order (inserted, or updated with its history in one statement), its history and its events."""
    # Not pipelined: under eventlet psycopg's pipeline wait spins and measured slower (320 vs 425 orders/s).
    order = outcome.order
    if previous_version is None:
        store.insert(tx, order, idempotency_key, request_hash)
        store.add_history(tx, order.id, outcome.history)
    elif store.update_with_history(tx, order, previous_version, outcome.history) != 1:
        # We hold the row lock, so this cannot happen unless something bypassed it: refuse loudly.
        raise RuntimeError(f"order {order.id} changed under a held lock (version {previous_version})")
    for event in outcome.events:
        outbox.emit(tx, SERVICE, event, subject=str(order.id), correlation_id=str(order.id), causation_id=causation_id)


def save_many(tx: Tx, saves: Sequence[tuple[domain.Outcome, int]], *, causation_id: str) -> None:
    """:func:`save` for a batch of changed orders (``(outcome, version it was loaded at)``), set-based: one UPDATE
    for the orders, one INSERT for their history and one for their events, whatever the batch's size.

    Each order gets exactly what ``save`` would write for it; the caller holds every order's row lock.
    """
    if not saves:
        return
    updated = store.update_many(tx, [(outcome.order, version) for outcome, version in saves])
    if updated != len(saves):
        raise RuntimeError(f"{len(saves) - updated} of {len(saves)} orders changed under a held lock")
    store.add_histories(tx, [(o.order.id, entry) for o, _ in saves for entry in o.history])
    outbox.emit_many(
        tx,
        SERVICE,
        [
            outbox.Emission(event, subject=str(o.order.id), correlation_id=str(o.order.id), causation_id=causation_id)
            for o, _ in saves
            for event in o.events
        ],
    )


def with_auto_confirm(outcome: domain.Outcome, now: datetime) -> domain.Outcome:
    """Fold the automatic placed → confirmed move into the same change (one transaction, two events)."""
    confirmed = domain.auto_confirm(outcome.order, now)
    if confirmed is None:
        return outcome
    return domain.Outcome(
        order=confirmed.order,
        changes={**outcome.changes, **confirmed.changes},
        history=[*outcome.history, confirmed.history_entry],
        events=[*outcome.events, confirmed.event],
        note=outcome.note,
    )


def detail(order: domain.Order, history: Sequence[domain.HistoryRecord]) -> dict[str, Any]:
    """The order's detail from the order and its history as loaded (``store.load_with_history``): no read."""
    return views.order_detail(order, list(history)).model_dump(mode="json")


def request_hash(cmd: BaseModel) -> str:
    canonical = json.dumps(cmd.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
