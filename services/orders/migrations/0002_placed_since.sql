-- depends: 0001_orders
-- The abandonment timer reads only the placed orders that are stale (issue #10, left over from #9).
--
-- An order is stale when it has been in `placed` since before the cutoff; that moment is the document's
-- `stage_changed_at`, which the old index (placed orders by placement date) could not see: each check read
-- every placed order, stale or not, and parsed its document to find out. `stage_entered_at(doc)` exposes it
-- to an index without a column to keep in step: every write of the document (the service's saves, the
-- payment projection, imports, a hand-made fix in SQL) keeps the index right by itself, and an order costs
-- no index entry at all once it leaves `placed`.
--
-- IMMUTABLE is true for the documents the store writes: `stage_changed_at` is always ISO 8601 with its UTC
-- offset (`document._time` of an aware datetime), so the text names one instant whatever the session's
-- TimeZone. The body stays un-inlined (it calls a merely stable cast), so the planner matches the index
-- by this function's name in `store.stale_placed_orders`.

CREATE FUNCTION stage_entered_at(doc jsonb) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (doc->>'stage_changed_at')::timestamptz $$;

-- Placed orders by the moment they entered `placed`: a check reads the stale ones and stops.
CREATE INDEX orders_placed_since ON orders (stage_entered_at(doc)) WHERE stage = 'placed';
DROP INDEX orders_placed_only;
