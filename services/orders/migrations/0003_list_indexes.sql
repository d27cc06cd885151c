-- depends: 0002_placed_since
-- The order list at a million orders (issue #10): every documented sort within one stage or one channel
-- reads its page straight off an index (bench/list_orders.py; figures in bench/RESULTS.md).
--
-- Sorting by payment completion within a stage or channel had no index: a stage that is never paid
-- (abandoned, rejected) sits behind every paid order in the payment-date index, so its first page read
-- most of the table (0.6-2.4 s at 1M). Unpaid orders sort last in both directions, hence two keys.

CREATE INDEX orders_stage_paid_asc ON orders (stage, (coalesce(paid_at, 'infinity'::timestamptz)), number);
CREATE INDEX orders_stage_paid_desc ON orders (stage, (coalesce(paid_at, '-infinity'::timestamptz)), number);
CREATE INDEX orders_channel_paid_asc ON orders (channel, (coalesce(paid_at, 'infinity'::timestamptz)), number);
CREATE INDEX orders_channel_paid_desc ON orders (channel, (coalesce(paid_at, '-infinity'::timestamptz)), number);
