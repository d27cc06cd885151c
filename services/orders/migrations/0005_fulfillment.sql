-- depends: 0004_list_ranges_and_search
-- Orders follow fulfillment (issue #11): the order keeps a copy of its fulfillment status (owned by the
-- fulfillment service, in the document as `fulfillment_status`), and the order list filters and sorts by it.
--
-- The column is generated from the document, like `stage_entered_at(doc)` (0002): every write of the document
-- (the service's saves, the projection of fulfillment's reports, imports, the bench seed) keeps it right by
-- itself, and the store never names it when writing. Orders written before this migration have no key in
-- their document: they are `unfulfilled`.
--
-- Indexes as for the stage (0001, 0003): filter by fulfillment status in every documented sort, and the sort
-- by fulfillment status (then number) alone, within a stage or within a channel.

ALTER TABLE orders ADD COLUMN fulfillment_status text NOT NULL
    GENERATED ALWAYS AS (coalesce(doc->>'fulfillment_status', 'unfulfilled')) STORED;

CREATE INDEX orders_fulfillment_placed ON orders (fulfillment_status, placed_at, number);
CREATE INDEX orders_fulfillment_paid_asc ON orders (fulfillment_status, (coalesce(paid_at, 'infinity'::timestamptz)), number);
CREATE INDEX orders_fulfillment_paid_desc ON orders (fulfillment_status, (coalesce(paid_at, '-infinity'::timestamptz)), number);
CREATE INDEX orders_fulfillment_number ON orders (fulfillment_status, number);
CREATE INDEX orders_stage_fulfillment ON orders (stage, fulfillment_status, number);
CREATE INDEX orders_channel_fulfillment ON orders (channel, fulfillment_status, number);
