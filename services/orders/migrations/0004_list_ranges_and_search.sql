-- depends: 0003_list_indexes
-- The order list at a million orders, continued (issue #10): a placement-date range sorted by payment date,
-- and search by a whole e-mail address or SKU (bench/list_orders.py; figures in bench/RESULTS.md).
--
-- Placement-date range sorted by payment date: no B-tree orders one column within a range of another, and
-- walking the payment-date index while filtering on the placement date read most of the table when the
-- range lies at the far end of the walk (0.4-1.5 s at 1M). `store.list_orders` now reads the range off
-- this index and sorts it; with the payment date and the filterable columns included, the read never
-- touches the (wide) rows. It replaces `orders_placed` (same key, so it also serves the placed_at sorts):
-- one index per order as before, ~20 bytes wider per entry.
CREATE INDEX orders_placed_cover ON orders (placed_at, number) INCLUDE (paid_at, stage, channel, test);
DROP INDEX orders_placed;

-- "Placed before a date", latest payment first: `store.list_orders` reads the orders placed in the last two
-- weeks before the date, and their page's last payment date t bounds the rest: an older order can only come
-- before t if it waited longer than (t - the two weeks' start) for its payment. Those few are found here.
-- Orders without a payment have no entry (a placement costs nothing; a payment one entry).
CREATE INDEX orders_paid_delay ON orders ((paid_at - placed_at)) WHERE paid_at IS NOT NULL;
-- Postgres estimates a condition on an expression from the statistics of an index on it only when the index
-- is not partial; without these it guessed a third of all orders waited that long and read the whole
-- placement-date index instead (35 ms at 1M, instead of well under 1).
CREATE STATISTICS orders_paid_delay_stats ON (paid_at - placed_at) FROM orders;

-- Search: pg_trgm splits text into words at every character that is not a letter or digit, so
-- `mug-navy-xs` was looked up as the three common words mug, navy and xs (16,533 candidate rows read and
-- rechecked for 3,351 matches) and an e-mail address as its name parts plus `example` and `com`, whose
-- trigrams every address has. `search_key` turns the separators into upper-case letters: pg_trgm then keeps
-- `mug-navy-xs` one word whose trigrams (`ugq`, `gqn`, `yqx`, ...) hardly occur elsewhere. The search text is
-- lower case, so the mapping is one-to-one and `search_key(search_text) LIKE search_key(pattern)` matches
-- exactly what `search_text LIKE pattern` did (`store._search_condition`). It replaces the old index: one
-- trigram index per order as before.
CREATE FUNCTION search_key(search_text text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT translate($1, ' .@-_', 'JZXQW') $$;
CREATE INDEX orders_search_key ON orders USING gin (search_key(search_text) public.gin_trgm_ops);
DROP INDEX orders_search;
