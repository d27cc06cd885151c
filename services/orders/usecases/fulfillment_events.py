"""What orders does with each event of the fulfillment service: one handler per event model, listed in
``FULFILLMENT_EVENT_HANDLERS``.

Fulfillment owns the fulfillment status and the shipments; orders keep a copy (the order page, the list's
filter and sort) and the order's stage follows the status (``domain.STAGE_FOLLOWS``: dispatched -> processed,
fulfilled -> shipped, delivered/picked up -> delivered, returned -> returned, through every stage in between,
each move by the ``fulfillment`` actor). An order fulfillment could not reserve stock for goes on hold with
reason ``out_of_stock``. Each event is applied once and in per-order order (``shared.inbox``), in batches, bound
to exactly the types of ``FULFILLMENT_EVENT_HANDLERS`` (``FULFILLMENT_EVENT_TYPES``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from services.fulfillment.contracts import events as fev
from services.orders import domain, store
from services.orders.usecases.common import Tx, now, save
from shared import inbox
from shared.catalog import parse_data
from shared.db import Database
from shared.envelope import Envelope

FULFILLMENT_ACTOR = domain.FULFILLMENT
FULFILLMENT_CONSUMER = "orders.fulfillment"


def handle_fulfillment_events(db: Database, events: Sequence[Envelope]) -> list[inbox.Outcome]:
    """Apply a batch of fulfillment events in one transaction, each once and in per-order order."""
    return inbox.process_batch(
        db, FULFILLMENT_CONSUMER, events, apply_fulfillment_event, types=FULFILLMENT_EVENT_TYPES
    )


def handle_fulfillment_event(db: Database, env: Envelope) -> inbox.Outcome:
    """Apply one fulfillment event once and in order (a batch of one)."""
    return handle_fulfillment_events(db, [env])[0]


def apply_fulfillment_event(tx: Tx, env: Envelope) -> None:
    """The handler for the event's model (``FULFILLMENT_EVENT_HANDLERS``), with the order loaded and locked."""
    data = parse_data(env)
    handler = FULFILLMENT_EVENT_HANDLERS.get(type(data))
    if handler is None:
        return
    order = store.load(tx, env.subject, for_update=True)
    handler(tx, env, order, data, now())


def _on_status_changed(
    tx: Tx, env: Envelope, order: domain.Order, data: fev.FulfillmentStatusChanged, now: datetime
) -> None:
    """Project the status and shipments; move the stage after the status (or record why it stays)."""
    shipments = [s.model_dump(mode="json") for s in data.shipments]
    projected, outcome = domain.follow_fulfillment(order, data.from_status, data.to_status, shipments, now)
    if outcome is None:
        store.set_fulfillment_projection(tx, projected)
        return
    save(tx, outcome, previous_version=order.version, causation_id=str(env.id))


def _on_out_of_stock(tx: Tx, env: Envelope, order: domain.Order, data: fev.OutOfStock, now: datetime) -> None:
    """On hold with reason ``out_of_stock`` (when the stage allows), the short lines in the history entry."""
    outcome = domain.hold_out_of_stock(order, [line.model_dump(mode="json") for line in data.lines], now)
    save(tx, outcome, previous_version=order.version, causation_id=str(env.id))


FulfillmentEventHandler = Callable[[Tx, Envelope, domain.Order, Any, datetime], None]

FULFILLMENT_EVENT_HANDLERS: dict[type[Any], FulfillmentEventHandler] = {
    fev.FulfillmentStatusChanged: _on_status_changed,
    fev.OutOfStock: _on_out_of_stock,
}
"""The fulfillment events orders acts on, each with its handler (the order is loaded, locked, for it)."""

FULFILLMENT_EVENT_TYPES: tuple[str, ...] = tuple(sorted(model.event_type for model in FULFILLMENT_EVENT_HANDLERS))
"""What orders subscribe to: exactly the types of ``FULFILLMENT_EVENT_HANDLERS``."""
