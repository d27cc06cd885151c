"""The abandonment timer's use case: placed orders left without address or payment become abandoned.

Set-based, so one check keeps up with a merchant placing hundreds of orders a second: the check works in
batches, each its own short transaction. A batch locks up to ``batch_size`` stale orders ``FOR UPDATE SKIP
LOCKED`` (another timer or a staff member's open change keeps its orders; nobody waits), the domain decides
for each order in memory (``domain.abandon``: the only place that says what is abandonable and what an
abandonment records), and the batch is written with one statement each for the orders, their history and
their events (``save_many``). Batches follow one another until no stale order is left or the check's time
budget is spent; what is left waits for the next check, which Nameko's timer starts at once when a check ran
past its interval.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from uuid import UUID

from services.orders import domain, store
from services.orders.usecases.common import now, save_many
from shared.db import Database

log = logging.getLogger(__name__)

CAUSATION = "timer:abandon"


def abandon_stale_orders(
    db: Database, abandon_after_seconds: float, batch_size: int = 500, time_budget_seconds: float = 20.0
) -> int:
    """The timer's job: placed orders without address or payment for too long become abandoned.

    Returns how many orders this check abandoned.
    """
    started = time.monotonic()
    abandoned = batches = 0
    after: tuple[datetime, UUID] | None = None
    while True:
        with db.transaction() as tx:
            at = now()
            orders = store.stale_placed_orders(tx, at - timedelta(seconds=abandon_after_seconds), batch_size, after)
            moves = [
                (domain.abandon(o, at, abandon_after_seconds).as_outcome(), o.version)
                for o in orders
                if domain.is_abandonable(o, at, abandon_after_seconds)
            ]
            save_many(tx, moves, causation_id=CAUSATION)
        abandoned += len(moves)
        batches += 1
        if len(orders) < batch_size:
            break  # nothing stale left (but orders others hold locked: the next check looks again)
        # Continue after the last order looked at, so orders the domain declined are not looked at again.
        after = (orders[-1].placed_at, orders[-1].id)
        if time.monotonic() - started >= time_budget_seconds:
            log.warning(
                "abandonment check used its %.0fs budget after %d orders; the next check continues",
                time_budget_seconds,
                abandoned,
            )
            break
    if abandoned:
        log.info(
            "abandoned %d placed orders without address or payment (%d batches of up to %d, %.2fs)",
            abandoned,
            batches,
            batch_size,
            time.monotonic() - started,
        )
    return abandoned
