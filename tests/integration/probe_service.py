"""Real Nameko services used by the backbone tests: they consume ``order.*`` events like any service.

The handlers' behaviour is chosen by the note text of ``order.note_added.v1`` events, so a test can make
them succeed, fail for a while, or fail permanently, and then look at their effects tables.
``ProbeService`` takes one event per worker; ``BatchProbeService`` takes batches, once on a wildcard
subscription and once on a typed one (exact types only, ordered by ``typecounts``).
"""

from __future__ import annotations

import os
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


# The batch probe's settings come from the environment so a benchmark can run it at batch 1 and at batch 100.
BATCH_SIZE = int(os.environ.get("OMS_PROBE_BATCH_SIZE", "50"))
BATCH_WAIT = float(os.environ.get("OMS_PROBE_BATCH_WAIT", "0.2"))
RECORD_ATTEMPTS = os.environ.get("OMS_PROBE_RECORD_ATTEMPTS", "1") == "1"  # the benchmark turns it off
WILDCARD_CONSUMER = "batchprobe.orders"
TYPED_CONSUMER = "batchprobe.notes"
NOTE_TYPES = ("order.note_added.v1", "order.note_edited.v1")
"""What the typed subscription acts on: ``order.note_deleted.v1`` (and every other order type) never reaches it."""


class BatchProbeService:
    name = "batchprobe"
    db: Database = DatabaseProvider("probe")  # type: ignore[assignment]

    @subscribe("orders", ["order.#"], batch_size=BATCH_SIZE, batch_wait=BATCH_WAIT)
    def on_order_events(self, batch: list[tuple[Envelope, EventModel]]) -> None:
        _handle_batch(self.db, WILDCARD_CONSUMER, None, batch)

    @subscribe("notes", NOTE_TYPES, batch_size=BATCH_SIZE, batch_wait=BATCH_WAIT)
    def on_note_events(self, batch: list[tuple[Envelope, EventModel]]) -> None:
        _handle_batch(self.db, TYPED_CONSUMER, NOTE_TYPES, batch)


def _handle_batch(db: Database, consumer: str, types: tuple[str, ...] | None, batch: list[Any]) -> None:
    envs = [env for env, _data in batch]
    if RECORD_ATTEMPTS:
        _record_attempts(db, consumer, envs)
    inbox.process_batch(db, consumer, envs, lambda tx, env: _apply_batched(tx, consumer, env), types=types)


def _record_attempts(db: Database, consumer: str, envs: list[Envelope]) -> None:
    with db.transaction() as tx:  # committed apart, so a test sees every try, even one that is rolled back
        tx.execute(
            "INSERT INTO batch_attempts (consumer, event_id, batch) SELECT %s, unnest(%s::uuid[]), %s",
            (consumer, [e.id for e in envs], len(envs)),
        )


def _switch(tx: psycopg.Connection[Any], name: str) -> bool:
    return tx.execute("SELECT 1 FROM switches WHERE name = %s", (name,)).fetchone() is not None


def _apply_batched(tx: psycopg.Connection[Any], consumer: str, env: Envelope) -> None:
    text = env.data.get("text", "")
    if text == "permanent":
        raise PermanentError("this note can never be handled")
    if text == "fail-always":
        raise RuntimeError("the handler is broken for this event")
    if text == "slow":
        tx.execute("SELECT pg_sleep(2.5)")  # a batch that takes long: what arrives meanwhile must wait for it
    if text == "die" and not _switch(tx, "alive"):
        os._exit(1)  # the process dies between applying and committing: nothing of its batch may be acked
    tx.execute(
        "INSERT INTO batch_effects (consumer, event_id, event_type, subject, sequence, text) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (consumer, env.id, env.type, env.subject, env.sequence, text or env.type),
    )
    if text == "trap-commit":
        tx.execute("INSERT INTO commit_traps VALUES ('commit-ok')")  # the COMMIT fails until switched on
