"""What payments do with the fulfillment service's events: remember the units the customer returned.

``fulfillment.return_recorded.v1`` names the units of each line that came back after delivery; payments keep
them (``returned_units``) so the refund preview shows, per line, what was returned and not refunded yet, and a
refund ``from_returns`` gives exactly that back. Each event is applied once and in per-order order
(``shared.inbox``), bound to exactly the types of ``FULFILLMENT_EVENT_HANDLERS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from services.fulfillment.contracts import events as fev
from services.payments import store
from services.payments.usecases.common import Tx
from shared import inbox
from shared.catalog import parse_data
from shared.db import Database
from shared.envelope import Envelope

log = logging.getLogger(__name__)

CONSUMER = "payments.fulfillment"


def handle_fulfillment_events(db: Database, events: Sequence[Envelope]) -> list[inbox.Outcome]:
    """Apply a batch of fulfillment events in one transaction, each once and in per-order order."""
    return inbox.process_batch(db, CONSUMER, events, apply_fulfillment_event, types=FULFILLMENT_EVENT_TYPES)


def handle_fulfillment_event(db: Database, env: Envelope) -> inbox.Outcome:
    """Apply one fulfillment event once and in order (a batch of one)."""
    return handle_fulfillment_events(db, [env])[0]


def apply_fulfillment_event(tx: Tx, env: Envelope) -> None:
    data = parse_data(env)
    handler = FULFILLMENT_EVENT_HANDLERS.get(type(data))
    if handler is not None:
        handler(tx, env, data)


def return_recorded(tx: Tx, env: Envelope, data: fev.ReturnRecorded) -> None:
    """Remember the returned units per line (a return already recorded adds nothing)."""
    p = store.find(tx, data.order_id, for_update=True)
    if p is None:
        log.warning("%s for order %s, which payments never saw placed; ignored", env.type, data.order_id)
        return
    known = {line.line_id for line in p.order.lines}
    lines: dict[str, int] = {}
    for line in data.lines:
        if line.line_id not in known:
            log.warning("return %s names line %s, not on order %s; ignored", data.return_id, line.line_id, p.number)
            continue
        lines[line.line_id] = lines.get(line.line_id, 0) + line.quantity
    store.record_return(tx, p.order_id, data.return_id, lines, data.at)


FULFILLMENT_EVENT_HANDLERS: dict[type[Any], Callable[[Tx, Envelope, Any], None]] = {
    fev.ReturnRecorded: return_recorded,
}
"""The fulfillment events payments act on, each with its handler."""

FULFILLMENT_EVENT_TYPES: tuple[str, ...] = tuple(sorted(model.event_type for model in FULFILLMENT_EVENT_HANDLERS))
"""What payments subscribe to from fulfillment: exactly the types of ``FULFILLMENT_EVENT_HANDLERS``."""
