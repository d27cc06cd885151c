"""A real Nameko service used by the backbone tests: it consumes ``order.*`` events like any service.

Its handler's behaviour is chosen by the note text of ``order.note_added.v1`` events, so a test can make
it succeed, fail for a while, or fail permanently, and then look at its effects table.
"""

from __future__ import annotations

from typing import Any

import psycopg

from shared import inbox
from shared.consumer import subscribe
from shared.db import Database
from shared.envelope import Envelope, EventModel
from shared.errors import PermanentError
from shared.nameko_ext import DatabaseProvider

CONSUMER = "probe.orders"


class ProbeService:
    name = "probe"
    db: Database = DatabaseProvider("probe")  # type: ignore[assignment]

    @subscribe("orders", ["order.#"])
    def on_order_event(self, env: Envelope, data: EventModel) -> None:
        text = getattr(data, "text", "")
        with self.db.transaction() as tx:
            tx.execute("INSERT INTO attempts (event_id) VALUES (%s)", (env.id,))
        if text == "permanent":
            raise PermanentError("this note can never be handled")
        if text == "fail-always":
            raise RuntimeError("the handler is broken for this event")
        if text == "fail-until-fixed":
            with self.db.transaction() as tx:
                if tx.execute("SELECT 1 FROM switches WHERE name = 'fixed'").fetchone() is None:
                    raise RuntimeError("dependency not fixed yet")
        inbox.process(self.db, CONSUMER, env, _apply)


def _apply(tx: psycopg.Connection[Any], env: Envelope) -> None:
    tx.execute(
        "INSERT INTO effects (event_id, subject, sequence, text) VALUES (%s, %s, %s, %s)",
        (env.id, env.subject, env.sequence, env.data.get("text", env.type)),
    )
