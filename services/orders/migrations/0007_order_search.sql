-- depends: 0006_payment_status_filter
-- Search at a million orders (issue #10): a narrow copy of what the list filters and sorts by, plus the search
-- key, so a search reads ~45 narrow rows per page instead of ~5 wide ones (bench/list_orders.py; figures in
-- bench/RESULTS.md).
--
-- A whole SKU (`mug-navy-xs`, 3,351 matches at 1M) has to be read row by row wherever its matches are:
-- through the trigram index (5,143 candidates, ~5,100 heap pages of `orders`, whose ~1.2 kB document is stored
-- in the row) or walking a sort index and filtering (17k wide rows): 41-49 ms p50. A common word within a
-- month (`hoodie`, 5.1k matches in 4k pages) likewise. Here the same rows are ~180 bytes.
--
-- Triggers keep it: every write of `orders` (the store's set-based placement, saves, the payment and
-- fulfillment projections, imports, `seed_orders.py --into`, a hand-made fix in SQL) updates its row in the same
-- statement, as 0002's index and 0005's generated column keep themselves, so no writer can leave it stale.
-- A placement batch costs one more statement (statement-level, from its transition table), run inside its
-- INSERT; a save costs one row update only when a copied column changed (the WHEN clause is checked without
-- calling the function: a note or an address costs nothing).
--
-- `key` is `search_key(search_text)` (0004): separators as upper-case letters, so a whole SKU or e-mail address
-- is one trigram word, and the pattern is translated the same way (`store._search_condition`).

-- Order writes wait while this runs (reads go on): the copy is filled from a snapshot and the triggers exist
-- from the commit on, so a write in between would be missing from it. 48 s at 1M orders (bench/RESULTS.md).
LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE order_search (
    number             bigint      PRIMARY KEY,
    placed_at          timestamptz NOT NULL,
    paid_at            timestamptz,
    stage              text        NOT NULL,
    channel            text        NOT NULL,
    test               boolean     NOT NULL,
    fulfillment_status text        NOT NULL,
    payment_status     text,
    key                text        NOT NULL
) WITH (fillfactor = 90);  -- room for the HOT update of a stage change on the same page

INSERT INTO order_search
SELECT number, placed_at, paid_at, stage, channel, test, fulfillment_status, payment_status, search_key(search_text)
FROM orders;

-- The list's sorts (0001) for the search's walks (a common word: ~8 rows read per match); per-stage and
-- per-channel walks are not copied (the filter is checked on the narrow rows).
CREATE INDEX order_search_placed ON order_search (placed_at, number);
CREATE INDEX order_search_paid_asc ON order_search ((coalesce(paid_at, 'infinity'::timestamptz)), number);
CREATE INDEX order_search_paid_desc ON order_search ((coalesce(paid_at, '-infinity'::timestamptz)), number);
CREATE INDEX order_search_key ON order_search USING gin (key public.gin_trgm_ops);

CREATE FUNCTION order_search_inserted() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO order_search
    SELECT number, placed_at, paid_at, stage, channel, test, fulfillment_status, payment_status,
           search_key(search_text)
    FROM inserted;
    RETURN NULL;
END $$;

CREATE FUNCTION order_search_updated() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE order_search SET number = NEW.number, placed_at = NEW.placed_at, paid_at = NEW.paid_at,
        stage = NEW.stage, channel = NEW.channel, test = NEW.test, fulfillment_status = NEW.fulfillment_status,
        payment_status = NEW.payment_status, key = search_key(NEW.search_text)
    WHERE number = OLD.number;
    RETURN NULL;
END $$;

CREATE FUNCTION order_search_deleted() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM order_search s USING deleted d WHERE s.number = d.number;
    RETURN NULL;
END $$;

CREATE FUNCTION order_search_truncated() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    TRUNCATE order_search;
    RETURN NULL;
END $$;

CREATE TRIGGER order_search_inserted AFTER INSERT ON orders REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION order_search_inserted();
CREATE TRIGGER order_search_updated AFTER UPDATE ON orders FOR EACH ROW
    WHEN (OLD.number IS DISTINCT FROM NEW.number OR OLD.placed_at IS DISTINCT FROM NEW.placed_at
          OR OLD.paid_at IS DISTINCT FROM NEW.paid_at OR OLD.stage IS DISTINCT FROM NEW.stage
          OR OLD.channel IS DISTINCT FROM NEW.channel OR OLD.test IS DISTINCT FROM NEW.test
          OR OLD.fulfillment_status IS DISTINCT FROM NEW.fulfillment_status
          OR OLD.payment_status IS DISTINCT FROM NEW.payment_status OR OLD.search_text IS DISTINCT FROM NEW.search_text)
    EXECUTE FUNCTION order_search_updated();
CREATE TRIGGER order_search_deleted AFTER DELETE ON orders REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION order_search_deleted();
CREATE TRIGGER order_search_truncated AFTER TRUNCATE ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_search_truncated();

ANALYZE order_search;
-- Searches read only the copy now. Last: dropping it locks out the readers of `orders` until the commit.
DROP INDEX orders_search_key;
