"""Transactional outbox: an event is written with the state change it announces, and published after.

``emit`` runs inside the business transaction, so an event exists if and only if its change committed.
The ``Relay`` publishes committed rows in id order with batched publisher confirms and marks them
published; if the broker is down the rows simply wait. Exactly one relay per schema is active at a time
(a Postgres advisory lock elects it), which keeps per-order order and avoids double publishing when a
service is scaled out; the others stand by and take over within a second if the leader dies.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from prometheus_client import Counter, Histogram

from shared.amqp import ConfirmedPublisher, OutgoingMessage
from shared.db import check_ident
from shared.envelope import Envelope, EventModel, message_properties, source_for

log = logging.getLogger(__name__)

PUBLISHED = Counter("oms_outbox_published_total", "Events published from the outbox", ["schema"])
LAG = Histogram(
    "oms_outbox_publish_lag_seconds",
    "Commit-to-confirm lag of outbox events",
    ["schema"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def _envelope(
    service: str, event: EventModel, subject: str, correlation_id: str, causation_id: str, at: datetime | None
) -> Envelope:
    return Envelope(
        id=uuid.uuid4(),
        source=source_for(service),
        type=event.event_type,
        subject=subject,
        time=at or datetime.now(UTC),
        sequence=1,
        correlationid=correlation_id,
        causationid=causation_id,
        data=event.model_dump(mode="json"),
    )


# Events emitted in a transaction that a batch consumer opened (``buffered``): written with ONE statement just
# before commit instead of one per ``emit``. Keyed by the connection, so concurrent green threads never mix.
_buffers: weakref.WeakKeyDictionary[psycopg.Connection[Any], list[Envelope]] = weakref.WeakKeyDictionary()


@contextmanager
def buffered(tx: psycopg.Connection[Any]) -> Iterator[list[Envelope]]:
    """Collect every ``emit``/``emit_many`` of this transaction and write them at the end of the block, in the
    order emitted, with one statement (``emit_many``'s). Leave the block before the transaction commits; if the
    block raises, nothing is written (the transaction rolls back anyway).

    The stream rows are then locked at the end of the transaction rather than at each ``emit``: the use cases
    lock the order's own row before they change it, which is what orders concurrent changes of one order.
    """
    if tx in _buffers:  # already buffering (a use case inside a batch): the outer block writes
        yield _buffers[tx]
        return
    envs: list[Envelope] = []
    _buffers[tx] = envs
    try:
        yield envs
        del _buffers[tx]
        _write(tx, envs)
    finally:
        _buffers.pop(tx, None)


def emit(
    tx: psycopg.Connection[Any],
    service: str,
    event: EventModel,
    *,
    subject: str,
    correlation_id: str,
    causation_id: str,
    at: datetime | None = None,
) -> Envelope:
    """Append an event to this service's outbox inside the caller's transaction.

    One statement, so it pipelines: the per-subject sequence and type counts are bumped (the row lock also
    orders concurrent transactions on one order) and written into the stored CloudEvent by Postgres itself.
    The returned envelope carries ``sequence=1`` as a placeholder; the stored one has the real values.
    Inside ``buffered`` the event is only collected, and written with the others at the end of the block.
    """
    env = _envelope(service, event, subject, correlation_id, causation_id, at)
    pending = _buffers.get(tx)
    if pending is not None:
        pending.append(env)
        return env
    tx.execute(
        "WITH s AS ("
        "  INSERT INTO event_streams AS es (subject, last_sequence, type_counts)"
        "  VALUES (%(subject)s, 1, jsonb_build_object(%(type)s::text, 1))"
        "  ON CONFLICT (subject) DO UPDATE SET last_sequence = es.last_sequence + 1,"
        "    type_counts = es.type_counts || jsonb_build_object("
        "      %(type)s::text, coalesce((es.type_counts ->> %(type)s::text)::bigint, 0) + 1)"
        "  RETURNING last_sequence, type_counts) "
        "INSERT INTO outbox (event_id, event_type, subject, sequence, correlation_id, payload) "
        "SELECT %(id)s, %(type)s, %(subject)s, s.last_sequence, %(corr)s, "
        "       jsonb_set(jsonb_set(%(payload)s::jsonb, '{sequence}', to_jsonb(s.last_sequence)), '{typecounts}',"
        "         to_jsonb((SELECT string_agg(key || ':' || value, ',' ORDER BY key)"
        "                   FROM jsonb_each_text(s.type_counts))))::text FROM s",
        {
            "subject": subject,
            "id": env.id,
            "type": env.type,
            "corr": env.correlationid,
            "payload": env.to_json(),
        },
    )
    return env


class Emission(NamedTuple):
    """One event for :func:`emit_many`: what ``emit`` takes as arguments."""

    event: EventModel
    subject: str
    correlation_id: str
    causation_id: str
    at: datetime | None = None


def emit_many(tx: psycopg.Connection[Any], service: str, emissions: Sequence[Emission]) -> list[Envelope]:
    """``emit`` for many events in ONE statement: what a set-based job (the abandonment timer) writes.

    Same semantics as calling ``emit`` for each in turn: each subject's stream is bumped once by its number
    of events (one row lock per subject, taken in subject order so two batches never deadlock), each event
    gets the next gapless sequence of its subject and its type counts in the order given, and outbox ids
    follow that order, so the relay publishes them in it. Returned envelopes carry ``sequence=1`` as a
    placeholder, as ``emit``'s. Inside ``buffered`` the events are only collected.
    """
    envs = [_envelope(service, e.event, e.subject, e.correlation_id, e.causation_id, e.at) for e in emissions]
    pending = _buffers.get(tx)
    if pending is not None:
        pending.extend(envs)
    else:
        _write(tx, envs)
    return envs


# The batch write is the function ``outbox_write`` (migration shared_0003): the same statement as before, moved
# into Postgres so that it is planned once per connection instead of at almost every call (the migration says
# why). Binary payloads: the text format escapes every quote by regex.
_WRITE_MANY = (
    "SELECT outbox_write(%(ids)s::uuid[], %(types)s::text[], %(subjects)s::text[], %(corrs)s::text[],"
    " %(payloads)b::text[])"
)


def _write(tx: psycopg.Connection[Any], envs: Sequence[Envelope]) -> None:
    if not envs:
        return
    tx.execute(
        _WRITE_MANY,
        {
            "ids": [env.id for env in envs],
            "types": [env.type for env in envs],
            "subjects": [env.subject for env in envs],
            "corrs": [env.correlationid for env in envs],
            "payloads": [env.to_json() for env in envs],
        },
    )


def _lock_key(schema: str) -> str:
    return f"oms.outbox.{schema}"


_COLUMNS = "id, event_id, event_type, subject, sequence, correlation_id, payload, created_at"

_MARK = "UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY(%s)"
_FETCH = f"SELECT {_COLUMNS} FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT %(n)s"
# The next batch read while the current one awaits its confirms (a backlog): its rows are unpublished too, so they
# are excluded by id. Not ``id > last``: a transaction that took a lower id may commit after the batch was read
# (another order's), and must still be sent. Per order, ids follow commit order (the stream row's lock).
_FETCH_NEXT = (
    f"SELECT {_COLUMNS} FROM outbox WHERE published_at IS NULL AND NOT (id = ANY(%(sent)s)) ORDER BY id LIMIT %(n)s"
)
# Below peak (the batch was not full): mark the confirmed rows published and read what committed since, in ONE
# statement, without psycopg's pipeline mode, which costs more client CPU than the round trip it saves for a
# batch of a few events (measured: a four-statement transaction 74-77 us of CPU plain, 123-153 us in a pipeline).
# The read shares the UPDATE's snapshot, where the rows just marked still look unpublished: they are excluded by
# id, through a hashed set (``NOT IN (SELECT unnest(...))``), as the batch that ends a backlog may be thousands
# of rows. The backlog itself keeps its pipeline (mark, then ``_FETCH_NEXT``): done as one statement like this,
# it moved 10,342-10,851 events/s instead of 11,519-12,681 (a 50,000-event backlog, alternated).
_MARK_AND_FETCH = (
    "WITH marked AS (UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY(%(done)s)) "
    f"SELECT {_COLUMNS} FROM outbox WHERE published_at IS NULL"
    " AND id NOT IN (SELECT unnest(%(done)s::bigint[])) ORDER BY id LIMIT %(n)s"
)

# The relay's statements must walk an index, whatever plan Postgres keeps for them: its own connection turns
# sequential and bitmap scans off (``RELAY_SESSION``), so they can be prepared (planned once per connection).
#
# Why no sequential scan: psycopg prepares a statement after a few executions and Postgres keeps its generic plan
# for the connection; the relay starts on an almost empty outbox, where a sequential scan is the cheapest plan,
# and that plan was kept until autovacuum happened to analyze the table: every batch then read the whole outbox,
# published history included (measured: Postgres CPU per card order 26 ms instead of 10 ms after 18,000 orders).
# The statements were then planned at every execution instead (``prepare=False``), at 0.05-0.08 ms of Postgres
# CPU each, three per event published alone; with the scans off, no plan it could keep reads the table.
#
# Why no bitmap scan: the fetch must walk the partial index in id order (an index scan): marking a row
# published leaves its old version's entry in ``outbox_unpublished`` until a vacuum. An index scan marks such
# entries dead as it passes them, so the next fetch skips them; a bitmap scan never does, and revisits every row
# published since the last vacuum at every fetch (measured: 5,900 of them, 1,000 pages, 48 ms per fetch instead
# of 0.3 on a database with autovacuum off, as this machine's CI Postgres is).
RELAY_SESSION = "-c enable_bitmapscan=off -c enable_seqscan=off"


def _fetch(conn: psycopg.Connection[Any], limit: int) -> psycopg.Cursor[Any]:
    """The next unpublished rows, in id order (the partial index ``outbox_unpublished``)."""
    return conn.execute(_FETCH, {"n": limit})


def _fetch_next(conn: psycopg.Connection[Any], sent: list[Any], limit: int) -> psycopg.Cursor[Any]:
    """The unpublished rows after the batch in flight (``sent``), in id order."""
    return conn.execute(_FETCH_NEXT, {"sent": sent, "n": limit})


def _mark_and_fetch(conn: psycopg.Connection[Any], done: list[Any], limit: int) -> psycopg.Cursor[Any]:
    """Mark ``done`` published; the unpublished rows but those, in id order."""
    return conn.execute(_MARK_AND_FETCH, {"done": done, "n": limit})


def _mark(conn: psycopg.Connection[Any], ids: list[Any]) -> None:
    """Mark confirmed rows published (the primary key)."""
    conn.execute(_MARK, (ids,))


class Relay:
    """Publishes one schema's outbox. ``run`` loops until ``stop()``; safe to run in many processes.

    Each round: send a batch of unpublished rows in id order. With a backlog (the batch was full), mark the
    previous (confirmed) batch published and read the next one in one round trip while the broker persists it;
    then wait for the batch's confirms. Without one, wait for the confirms first, then mark the batch and read
    what committed since in one round trip. The batch grows (doubling up to
    ``max_batch_size``) while the outbox has a backlog, so a burst is moved with few large writes and few
    confirm waits, and falls back to ``batch_size`` once drained, so the rows of a quiet moment go at once.
    Rows are marked only after their confirm: a failure anywhere leaves the batch unpublished, and the next
    leader sends it again from its first row, in the same order.
    """

    def __init__(
        self,
        database_url: str,
        schema: str,
        amqp_url: str,
        *,
        batch_size: int = 500,
        max_batch_size: int = 4000,
        idle_wait: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        publisher: Callable[[str], ConfirmedPublisher] = ConfirmedPublisher,
    ) -> None:
        self.database_url = database_url
        self.schema = check_ident(schema)
        self.amqp_url = amqp_url
        self.batch_size = batch_size
        self.max_batch_size = max(batch_size, max_batch_size)
        self.idle_wait = idle_wait
        self._sleep = sleep
        self._publisher = publisher
        self._stopped = threading.Event()
        self.is_leader = False
        self.published = 0
        self._source = source_for(self.schema)
        self._lag = LAG.labels(self.schema)
        self._published_counter = PUBLISHED.labels(self.schema)

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        backoff = 0.2
        while not self._stopped.is_set():
            try:
                self._run_as_leader()
                backoff = 0.2
            except Exception as exc:  # noqa: BLE001
                # Broker or database away: nothing is lost (rows stay unpublished); retry with backoff.
                self.is_leader = False
                if self._stopped.is_set():
                    break
                log.warning("outbox relay %s: %s; retrying in %.1fs", self.schema, exc, backoff)
                self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _run_as_leader(self) -> None:
        with psycopg.connect(
            self.database_url, autocommit=True, options=f"-c search_path={self.schema} {RELAY_SESSION}",
            connect_timeout=5,
        ) as conn:
            while not self._stopped.is_set():
                got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (_lock_key(self.schema),))
                row = got.fetchone()
                if row and row[0]:
                    break
                self._sleep(self.idle_wait)  # stand by: another instance is the leader
            else:
                return
            self.is_leader = True
            conn.execute(f"LISTEN outbox_{self.schema}")
            publisher = self._publisher(self.amqp_url)
            try:
                limit = self.batch_size
                rows = _fetch(conn, limit).fetchall()
                confirmed: list[Any] = []  # the previous batch: confirmed, not yet marked
                while not self._stopped.is_set():
                    if not rows:
                        if confirmed:
                            _mark(conn, confirmed)
                            self._count(rows_marked=len(confirmed))
                            confirmed = []
                        # Drained: sleep until a commit notifies us (or the idle timeout, as a safety net).
                        for _ in conn.notifies(timeout=self.idle_wait, stop_after=1):
                            pass
                        limit = self.batch_size
                        rows = _fetch(conn, limit).fetchall()
                        continue
                    full = len(rows) >= limit
                    batch = rows
                    self._send(publisher, batch)
                    limit = min(limit * 2, self.max_batch_size) if full else self.batch_size
                    sent = [r[0] for r in batch]
                    if not full:
                        # The outbox had no more: wait for this batch's confirms, then mark it (and any previous
                        # one) and read what committed since, in ONE statement. An event written alone, the usual
                        # case below peak, costs two round trips so (this one and the read after the wake-up).
                        publisher.wait_confirms()
                        self._confirmed(publisher, batch)
                        done = confirmed + sent
                        rows = _mark_and_fetch(conn, done, limit).fetchall()
                        self._count(rows_marked=len(done))
                        confirmed = []
                        continue
                    # A backlog: while the broker persists this batch, mark the previous one and read the next, in
                    # ONE round trip (a pipeline: two statements, so the read sees the marks).
                    with conn.pipeline():
                        if confirmed:
                            _mark(conn, confirmed)
                        cur = _fetch_next(conn, sent, limit)
                    rows = cur.fetchall()
                    if confirmed:
                        self._count(rows_marked=len(confirmed))
                    publisher.wait_confirms()
                    self._confirmed(publisher, batch)
                    confirmed = sent
                if confirmed:  # stopping: what the broker confirmed is not sent again by the next leader
                    _mark(conn, confirmed)
                    self._count(rows_marked=len(confirmed))
            finally:
                publisher.close()
                self.is_leader = False

    def publish_batch(self, conn: psycopg.Connection[Any], publisher: ConfirmedPublisher) -> int:
        """One round on its own (read, publish, mark): what a caller outside ``run`` (a test, a tool) uses."""
        rows = _fetch(conn, self.batch_size).fetchall()
        if not rows:
            return 0
        self._publish(publisher, rows)
        _mark(conn, [r[0] for r in rows])
        self._count(len(rows))
        return len(rows)

    def _publish(self, publisher: ConfirmedPublisher, rows: Sequence[tuple[Any, ...]]) -> None:
        self._send(publisher, rows)
        publisher.wait_confirms()
        self._confirmed(publisher, rows)

    def _send(self, publisher: ConfirmedPublisher, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write ``rows`` to the exchange, not ``mandatory``: an event no queue is bound for (most of
        notifications' message statuses, fulfillment's stock events, unless an integrator listens) is dropped
        by the broker instead of sent back whole to be parsed and logged here. 300 card orders had 3,855 of
        notifications' events (12.9 per order) and 763 of fulfillment's returned so, only to be counted in a log.
        RabbitMQ still counts them (``rabbitmq_global_messages_unroutable_dropped_total``); a confirm still
        means the broker took the event, so the outbox's guarantee (marked only once confirmed) is the same."""
        source = self._source
        publisher.send(
            OutgoingMessage(
                "oms.events", event_type, payload.encode(),
                message_properties(
                    event_id=event_id, event_type=event_type, subject=subject, sequence=sequence,
                    correlation_id=correlation_id, time=created_at, source=source,
                ),
                mandatory=False,
            )
            for _id, event_id, event_type, subject, sequence, correlation_id, payload, created_at in rows
        )

    def _confirmed(self, publisher: ConfirmedPublisher, rows: Sequence[tuple[Any, ...]]) -> None:
        """The broker confirmed ``rows``: observe their commit -> published lag."""
        now = datetime.now(UTC)
        observe = self._lag.observe
        for r in rows:
            observe((now - r[7]).total_seconds())

    def _count(self, rows_marked: int) -> None:
        self._published_counter.inc(rows_marked)
        self.published += rows_marked


def purge_published(conn: psycopg.Connection[Any], older_than_days: int = 7) -> int:
    cur = conn.execute("DELETE FROM outbox WHERE published_at < now() - make_interval(days => %s)", (older_than_days,))
    return cur.rowcount
