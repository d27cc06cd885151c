-- depends: shared_0001_backbone
-- Type-scoped ordering: besides the gapless per-subject ``sequence``, every event carries the per-subject count
-- of events of each type so far, including itself (the CloudEvent extension ``typecounts``). A consumer that
-- acts on a set S of types orders by the sum of the counts of S: gapless over the events it is sent.

-- The running counts per subject, bumped in the same statement as ``last_sequence`` (shared.outbox).
-- Streams that exist now start counting from here: an event's ``sequence`` minus the sum of its counts is the
-- number of events before the counting began (its "origin"), which consumers use to finish those first.
ALTER TABLE event_streams ADD COLUMN type_counts jsonb NOT NULL DEFAULT '{}';

-- Events written before this migration and not yet published get their counts now, so every event published
-- from here on carries them (a queue bound to exact types then never misses an uncounted event).
WITH pending AS (
    SELECT id, subject, event_type FROM outbox WHERE published_at IS NULL
), counted AS (
    SELECT r.id, string_agg(c.event_type || ':' || c.n, ',' ORDER BY c.event_type) AS typecounts
    FROM pending r
    CROSS JOIN LATERAL (
        SELECT p.event_type, count(*) AS n FROM pending p
        WHERE p.subject = r.subject AND p.id <= r.id GROUP BY p.event_type
    ) c
    GROUP BY r.id
)
UPDATE outbox o SET payload = jsonb_set(o.payload::jsonb, '{typecounts}', to_jsonb(counted.typecounts))::text
FROM counted WHERE o.id = counted.id;

UPDATE event_streams es SET type_counts = t.counts
FROM (
    SELECT subject, jsonb_object_agg(event_type, n) AS counts
    FROM (SELECT subject, event_type, count(*) AS n FROM outbox WHERE published_at IS NULL GROUP BY 1, 2) per_type
    GROUP BY subject
) t
WHERE es.subject = t.subject;

-- A consumer's position per (source, subject) is the last applied event's ``sequence`` and its counts (a
-- vector): projected on any type set S it gives the position under S, so S may change without a new name.
ALTER TABLE inbox_positions ADD COLUMN last_counts jsonb;
