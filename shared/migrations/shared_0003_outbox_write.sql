-- depends: shared_0002_typecounts
-- The outbox's batch write (shared.outbox._write) as a function, for ONE reason: its plan. Sent as a prepared
-- statement, Postgres planned this many-CTE statement afresh at almost every call (its generic plan, costed
-- for arrays of 10, looked dearer than a custom plan for the 1-5 events of a batch), and planning it took longer
-- than running it (measured: 0.6 ms of planning, 0.3 ms of execution). Inside a function with
-- ``plan_cache_mode = force_generic_plan`` it is planned once per connection. The generic plan is safe here:
-- every table it touches is reached by its key (event_streams' upsert by subject, the outbox insert).
--
-- Same semantics as before: each subject's stream is bumped once by its number of events, under its row lock
-- taken in subject order; each event gets the next gapless sequence of its subject and its type counts in the
-- order given (the CloudEvent's ``sequence`` and ``typecounts`` are written into the stored payload); outbox
-- ids follow the order given.
CREATE FUNCTION outbox_write(p_ids uuid[], p_types text[], p_subjects text[], p_corrs text[], p_payloads text[])
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    WITH e AS (
        SELECT * FROM unnest(p_ids, p_types, p_subjects, p_corrs, p_payloads)
        WITH ORDINALITY AS e(event_id, event_type, subject, corr, payload, n)
    ), per_subject AS (
        SELECT e.subject, count(*) AS k, array_agg(e.event_type ORDER BY e.n) AS kinds FROM e GROUP BY e.subject
    ), per_type AS (
        SELECT t.subject, jsonb_object_agg(t.event_type, t.k) AS added
        FROM (SELECT e.subject, e.event_type, count(*) AS k FROM e GROUP BY 1, 2) t GROUP BY t.subject
    ), s AS (
        INSERT INTO event_streams AS es (subject, last_sequence, type_counts)
        SELECT p.subject, p.k, t.added FROM per_subject p JOIN per_type t USING (subject) ORDER BY p.subject
        ON CONFLICT (subject) DO UPDATE SET last_sequence = es.last_sequence + EXCLUDED.last_sequence,
            type_counts = (SELECT jsonb_object_agg(key, total) FROM (
                SELECT key, sum(value::bigint) AS total FROM (
                    SELECT * FROM jsonb_each_text(es.type_counts)
                    UNION ALL SELECT * FROM jsonb_each_text(EXCLUDED.type_counts)
                ) both_counts GROUP BY key) summed)
        RETURNING es.subject, es.last_sequence, es.type_counts
    ), numbered AS (
        SELECT e.*, s.type_counts, p.kinds,
               row_number() OVER (PARTITION BY e.subject ORDER BY e.n) AS r, s.last_sequence - p.k AS base
        FROM e JOIN s USING (subject) JOIN per_subject p USING (subject)
    ), stamped AS (
        -- An event's count of type t = the stream's count after the upsert minus the events of type t that come
        -- after it in the batch (``later``, the subject's types from its next one on).
        SELECT numbered.*, base + r AS seq,
            (SELECT string_agg(c.key || ':' || c.n, ',' ORDER BY c.key) FROM (
                SELECT tc.key, tc.value::bigint
                       - (SELECT count(*) FROM unnest(kinds[r + 1:]) AS later(kind) WHERE later.kind = tc.key) AS n
                FROM jsonb_each_text(type_counts) tc) c WHERE c.n > 0) AS typecounts
        FROM numbered
    )
    INSERT INTO outbox (event_id, event_type, subject, sequence, correlation_id, payload)
    SELECT st.event_id, st.event_type, st.subject, st.seq, st.corr,
           jsonb_set(jsonb_set(st.payload::jsonb, '{sequence}', to_jsonb(st.seq)), '{typecounts}',
                     to_jsonb(st.typecounts))::text
    FROM stamped st ORDER BY st.n;
END $$;
