"""Idempotent, ordered handling of incoming events, a batch at a time.

One transaction per batch holds: the inbox rows (consumer, event id) that make a redelivery a no-op, the
positions per (source, subject) that make a late duplicate a no-op and keep an early event waiting in
``inbox_parked`` until the gap before it fills, and the handlers' own effects. So an event delivered twice
has one effect, and events that arrive out of order are applied in order, never as an illegal transition.

**Which order.** A consumer acts on a set S of event types (``types``; None means every type of the source,
what a wildcard binding such as ``order.#`` delivers). Every event carries, besides its gapless per-subject
``sequence``, the count of events of each type of its subject so far, itself included (``typecounts``). The
event's position for this consumer is the sum of the counts of S: gapless over exactly the events of S, so a
consumer bound to only those types still sees every position and applies them in the publisher's order. The
types outside S never reach it and leave no gap.

**The stored position** is the last applied event's ``sequence`` and its whole counts vector, not a number:
projected on S it is the position under S. Adding a type to S later starts it at the count that type had
when the last applied event was published (earlier events of it are not replayed), removing one drops it;
a wildcard consumer can become a typed one under the same name. No position is ever mixed across meanings.

Events published before the counts existed (migration ``shared_0002``) have no ``typecounts``: they are
ordered by ``sequence`` as before, and a counted event waits until every uncounted one before it was applied
(its ``sequence`` minus the sum of its counts is the number of those).

Round trips per batch: one to claim every event and lock every position (in (source, subject) order, so two
concurrent batches never deadlock), one to record the positions (and park what is early), plus one more only
when parked events turn out to be next.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from shared import outbox
from shared.db import Database
from shared.envelope import Envelope

log = logging.getLogger(__name__)

Apply = Callable[[psycopg.Connection[Any], Envelope], None]


class Outcome(StrEnum):
    applied = "applied"
    duplicate = "duplicate"
    stale = "stale"
    parked = "parked"
    ignored = "ignored"  # a type this consumer does not act on (left in its queue when its bindings changed)


def process(
    db: Database, consumer: str, env: Envelope, apply: Apply, *, types: Collection[str] | None = None
) -> Outcome:
    """One event: a batch of one."""
    return process_batch(db, consumer, [env], apply, types=types)[0]


def process_in(
    tx: psycopg.Connection[Any], consumer: str, env: Envelope, apply: Apply, *, types: Collection[str] | None = None
) -> Outcome:
    return process_batch_in(tx, consumer, [env], apply, types=types)[0]


def process_batch(
    db: Database,
    consumer: str,
    events: Sequence[Envelope],
    apply: Apply,
    *,
    types: Collection[str] | None = None,
) -> list[Outcome]:
    """Apply a batch in one transaction; the events every ``apply`` emits are written with one statement
    before the commit (``outbox.buffered``). Returns each event's outcome, in the order given. If anything
    raises, nothing of the batch took effect."""
    with db.transaction() as tx, outbox.buffered(tx):
        return process_batch_in(tx, consumer, events, apply, types=types)


# Claim every event and lock every position in ONE round trip. DO UPDATE (not DO NOTHING + SELECT FOR UPDATE)
# because it locks and returns the latest committed position even when a concurrent transaction created the
# row after this statement's snapshot. Rows go in sorted order: two batches lock in the same order.
_CLAIM = (
    "WITH claim AS ("
    "  INSERT INTO inbox (consumer, event_id, event_type)"
    "  SELECT %(consumer)s, x.id, x.type FROM unnest(%(ids)s::uuid[], %(types)s::text[]) AS x(id, type) ORDER BY x.id"
    "  ON CONFLICT DO NOTHING RETURNING event_id"
    "), pos AS ("
    "  INSERT INTO inbox_positions AS p (consumer, source, subject, last_sequence)"
    "  SELECT %(consumer)s, k.source, k.subject, 0"
    "  FROM unnest(%(sources)s::text[], %(subjects)s::text[]) AS k(source, subject) ORDER BY k.source, k.subject"
    "  ON CONFLICT (consumer, source, subject) DO UPDATE SET last_sequence = p.last_sequence"
    "  RETURNING p.source, p.subject, p.last_sequence, p.last_counts"
    ") "
    "SELECT NULL::text, event_id::text, NULL::bigint, NULL::jsonb FROM claim "
    "UNION ALL SELECT source, subject, last_sequence, last_counts FROM pos"
)
# Record the positions that moved, park early events, drop parked ones now applied, and read the parked events
# of the subjects that moved (a new statement: it sees what concurrent batches parked before we took the lock).
# Each table is reached through its key with ``= ANY``, besides the join: Postgres keeps a generic plan for this
# statement, and one made while the table was small (or never analyzed, as with autovacuum off) joined by
# reading ALL of the consumer's positions, a cost that grew with every order the consumer had ever seen
# (measured: 0.8-0.9 ms a batch after 1,400 orders instead of 0.1; tests/integration/test_generic_plans.py).
_ADVANCE = (
    "WITH moved AS ("
    "  UPDATE inbox_positions p SET last_sequence = m.seq, last_counts = m.counts::jsonb, updated_at = now()"
    "  FROM unnest(%(m_sources)s::text[], %(m_subjects)s::text[], %(m_seqs)s::bigint[], %(m_counts)s::text[])"
    "    AS m(source, subject, seq, counts)"
    "  WHERE p.consumer = %(consumer)s AND p.source = ANY(%(m_sources)s::text[])"
    "    AND p.subject = ANY(%(m_subjects)s::text[]) AND p.source = m.source AND p.subject = m.subject"
    "), park AS ("
    "  INSERT INTO inbox_parked (consumer, source, subject, sequence, event)"
    "  SELECT %(consumer)s, * FROM unnest(%(p_sources)s::text[], %(p_subjects)s::text[], %(p_seqs)s::bigint[],"
    "                                    %(p_events)s::text[])"
    "  ON CONFLICT DO NOTHING"
    "), unpark AS ("
    "  DELETE FROM inbox_parked d"
    "  USING unnest(%(d_sources)s::text[], %(d_subjects)s::text[], %(d_seqs)s::bigint[]) AS x(source, subject, seq)"
    "  WHERE d.consumer = %(consumer)s AND d.source = ANY(%(d_sources)s::text[])"
    "    AND d.subject = ANY(%(d_subjects)s::text[]) AND d.source = x.source AND d.subject = x.subject"
    "    AND d.sequence = x.seq"
    ") "
    "SELECT q.source, q.subject, q.sequence, q.event FROM inbox_parked q "
    "JOIN unnest(%(m_sources)s::text[], %(m_subjects)s::text[]) AS k(source, subject) USING (source, subject) "
    "WHERE q.consumer = %(consumer)s AND q.source = ANY(%(m_sources)s::text[])"
    "  AND q.subject = ANY(%(m_subjects)s::text[])"
)


@dataclass
class _Stream:
    """One (source, subject) of the batch: its position and the events waiting for it."""

    last_sequence: int
    last_counts: dict[str, int] | None
    fresh: list[Envelope] = field(default_factory=list)  # claimed by this batch, not applied, not parked yet
    parked: dict[int, Envelope] = field(default_factory=dict)  # in inbox_parked, by sequence
    to_park: list[Envelope] = field(default_factory=list)
    to_unpark: list[int] = field(default_factory=list)
    gone: set[int] = field(default_factory=set)  # unparked by this batch (a later read may still see them)
    moved: bool = False


def _position(counts: dict[str, int], types: Collection[str] | None) -> int:
    if types is None:
        return sum(counts.values())
    return sum(counts.get(t, 0) for t in types)


def _place(s: _Stream, env: Envelope, types: Collection[str] | None) -> str:
    """``next``, ``stale`` or ``ahead`` of the stream's position, for a consumer of ``types``."""
    counts = env.counts
    if counts is None:  # published before the counts existed: its gapless sequence orders it
        if env.sequence <= s.last_sequence:
            return "stale"
        return "next" if env.sequence == s.last_sequence + 1 else "ahead"
    pos = _position(counts, types)
    last = _position(s.last_counts or {}, types)
    if pos <= last:
        return "stale"
    uncounted_before = env.sequence - sum(counts.values())
    return "next" if pos == last + 1 and s.last_sequence >= uncounted_before else "ahead"


def process_batch_in(
    tx: psycopg.Connection[Any],
    consumer: str,
    events: Sequence[Envelope],
    apply: Apply,
    *,
    types: Collection[str] | None = None,
) -> list[Outcome]:
    outcomes: dict[Any, Outcome] = {}
    todo: list[Envelope] = []
    for env in events:
        if env.id in outcomes:
            continue  # the same event twice in one batch: the later copies are duplicates
        if types is not None and env.counts is not None and env.type not in types:
            outcomes[env.id] = Outcome.ignored
            continue
        outcomes[env.id] = Outcome.duplicate
        todo.append(env)
    if todo:
        _run(tx, consumer, todo, apply, types, outcomes)
    seen: set[Any] = set()
    result = []
    for env in events:
        result.append(outcomes[env.id] if env.id not in seen else Outcome.duplicate)
        seen.add(env.id)
    return result


def _run(
    tx: psycopg.Connection[Any],
    consumer: str,
    todo: list[Envelope],
    apply: Apply,
    types: Collection[str] | None,
    outcomes: dict[Any, Outcome],
) -> None:
    keys = sorted({(e.source, e.subject) for e in todo})
    cur = tx.cursor(row_factory=tuple_row)
    cur.execute(_CLAIM, {
        "consumer": consumer, "ids": [e.id for e in todo], "types": [e.type for e in todo],
        "sources": [k[0] for k in keys], "subjects": [k[1] for k in keys],
    })
    fresh: set[str] = set()
    streams: dict[tuple[str, str], _Stream] = {}
    for source, subject, last_sequence, last_counts in cur.fetchall():
        if source is None:
            fresh.add(subject)
        else:
            streams[(source, subject)] = _Stream(last_sequence, last_counts)
    for env in todo:
        if str(env.id) in fresh:
            streams[(env.source, env.subject)].fresh.append(env)
    for key in keys:
        _resolve(consumer, key, streams[key], apply, types, outcomes, tx)
    while any(s.moved or s.to_park or s.to_unpark for s in streams.values()):
        rows = _advance(cur, consumer, streams)
        progressed = []
        for source, subject, sequence, event in rows:
            s = streams[(source, subject)]
            if sequence not in s.parked and sequence not in s.gone:
                s.parked[sequence] = Envelope.model_validate_json(event)
                progressed.append((source, subject))
        for key in sorted(set(progressed)):
            _resolve(consumer, key, streams[key], apply, types, outcomes, tx)


def _resolve(
    consumer: str,
    key: tuple[str, str],
    s: _Stream,
    apply: Apply,
    types: Collection[str] | None,
    outcomes: dict[Any, Outcome],
    tx: psycopg.Connection[Any],
) -> None:
    """Apply every waiting event of one stream that is next, in order; settle the rest."""
    while True:
        candidates = sorted(
            [(e.sequence, e, False) for e in s.fresh] + [(seq, e, True) for seq, e in s.parked.items()],
            key=lambda c: c[0],
        )
        nxt = next((c for c in candidates if _place(s, c[1], types) == "next"), None)
        if nxt is None:
            break
        _seq, env, was_parked = nxt
        apply(tx, env)
        s.last_sequence = max(s.last_sequence, env.sequence)
        if env.counts is not None:
            s.last_counts = env.counts
        s.moved = True
        outcomes[env.id] = Outcome.applied
        if was_parked:
            del s.parked[env.sequence]
            s.to_unpark.append(env.sequence)
        else:
            s.fresh.remove(env)
    for env in list(s.fresh):
        s.fresh.remove(env)
        if _place(s, env, types) == "stale":
            outcomes[env.id] = Outcome.stale
        else:
            outcomes[env.id] = Outcome.parked
            s.to_park.append(env)
            log.info("%s: parked %s #%d of %s", consumer, env.type, env.sequence, key[1])
    for seq, env in list(s.parked.items()):
        outside = types is not None and env.counts is not None and env.type not in types
        if outside or _place(s, env, types) == "stale":
            del s.parked[seq]
            s.to_unpark.append(seq)


def _advance(cur: psycopg.Cursor[Any], consumer: str, streams: dict[tuple[str, str], _Stream]) -> list[Any]:
    moved = sorted(k for k, s in streams.items() if s.moved)
    parks = [(k, e) for k, s in sorted(streams.items()) for e in s.to_park]
    unparks = [(k, seq) for k, s in sorted(streams.items()) for seq in s.to_unpark]
    cur.execute(_ADVANCE, {
        "consumer": consumer,
        "m_sources": [k[0] for k in moved],
        "m_subjects": [k[1] for k in moved],
        "m_seqs": [streams[k].last_sequence for k in moved],
        "m_counts": [_json(streams[k].last_counts) for k in moved],
        "p_sources": [k[0] for k, _ in parks],
        "p_subjects": [k[1] for k, _ in parks],
        "p_seqs": [e.sequence for _, e in parks],
        "p_events": [e.to_json() for _, e in parks],
        "d_sources": [k[0] for k, _ in unparks],
        "d_subjects": [k[1] for k, _ in unparks],
        "d_seqs": [seq for _, seq in unparks],
    })
    rows = cur.fetchall()
    for s in streams.values():
        s.gone.update(s.to_unpark)
        for e in s.to_park:
            s.parked[e.sequence] = e
        s.to_park, s.to_unpark, s.moved = [], [], False
    return rows


def _json(counts: dict[str, int] | None) -> str | None:
    return None if counts is None else json.dumps(counts, separators=(",", ":"), sort_keys=True)


def parked_summary(tx: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """What is waiting for a missing earlier event (an operator looks here when a DLQ holds a gap)."""
    return list(
        tx.execute(
            "SELECT consumer, source, subject, count(*) AS waiting, min(sequence) AS first_waiting, "
            "min(parked_at) AS since FROM inbox_parked GROUP BY 1, 2, 3 ORDER BY since"
        ).fetchall()
    )
