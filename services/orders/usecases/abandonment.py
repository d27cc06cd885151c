"""The abandonment timer's use case: placed orders left without address or payment become abandoned."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from services.orders import domain, store
from services.orders.usecases.common import now, save
from shared.db import Database

log = logging.getLogger(__name__)


def abandon_stale_orders(db: Database, abandon_after_seconds: float, batch: int = 200) -> int:
    """The timer's job: placed orders without address or payment for too long become abandoned."""
    at = now()
    cutoff = datetime.fromtimestamp(at.timestamp() - abandon_after_seconds, UTC)
    with db.transaction() as tx:
        count = 0
        for order in store.stale_placed_orders(tx, cutoff, batch):
            if not domain.is_abandonable(order, at, abandon_after_seconds):
                continue
            moved = domain.abandon(order, at, abandon_after_seconds)
            save(tx, moved.as_outcome(), previous_version=order.version, causation_id="timer:abandon")
            count += 1
    if count:
        log.info("abandoned %d placed orders without address or payment", count)
    return count
