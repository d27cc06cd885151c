-- depends: 0007_order_search
-- Whole-token search at a million orders (issue #10): a search for a whole SKU or e-mail address reads a page
-- off a btree instead of the trigram index's candidates (`mug-navy-xs`: 5,143 candidates, ~1 heap page each,
-- 43-60 ms p50 at 1M; bench/RESULTS.md "Order list at 1,000,000 orders").
--
-- `order_token`: one row per order and distinct "token" of its search text, a token being a word (split at
-- spaces) holding one of `- @ . _`: the SKUs with a dash, the e-mail address. It carries the two sort dates, so
-- a first page sorted by placement or payment date is ~51 entries of one index (token, sort key, number); the
-- other filters are checked on `order_search` for the rows read.
--
-- `order_token_vocab`: every token ever stored (never shrinks), with a trigram index. `store._whole_token`
-- asks it whether any OTHER token contains the term; only when none does is the token table's answer the
-- same as the "contains" search's (proof in `store._whole_token`). A deleted order or a changed e-mail leaves
-- its token here: that only sends such a term down the trigram path, never gives a wrong answer.
--
-- Triggers keep both in the writing statement, as 0007's keep `order_search`: statement-level on insert (two
-- more statements per placement batch: ~125 us an order at 1M, mostly the btree insertions), row-level on
-- update only when the search text or a sort date changed, statement-level on delete and truncate.

-- Order writes wait while this runs (reads go on): the tables are filled from a snapshot and the triggers exist
-- from the commit on, so a write in between would be missing.
LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE;

-- The tokens of a search text (distinct). The separators make the rule safe to use for a search term: a word
-- containing a term that holds a separator holds it too, so every word that could contain such a term is a
-- token (see `store._whole_token`).
CREATE FUNCTION search_tokens(search_text text) RETURNS SETOF text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT DISTINCT w FROM unnest(string_to_array($1, ' ')) w WHERE w ~ '[-@._]' $$;

CREATE TABLE order_token (
    token     text COLLATE "C" NOT NULL,  -- compared for equality only: byte order is enough and cheaper
    number    bigint           NOT NULL,
    placed_at timestamptz      NOT NULL,
    paid_at   timestamptz
);

INSERT INTO order_token SELECT w, number, placed_at, paid_at FROM orders, search_tokens(search_text) w;

-- The list's sorts behind the token (placed either way; one payment index for both directions: newest first
-- reads it as two walks, paid then unpaid, `store._list_by_token`); by number for the triggers.
CREATE INDEX order_token_placed ON order_token (token, placed_at, number);
CREATE INDEX order_token_paid ON order_token (token, (coalesce(paid_at, 'infinity'::timestamptz)), number);
CREATE INDEX order_token_number ON order_token (number);

CREATE TABLE order_token_vocab (token text PRIMARY KEY);
INSERT INTO order_token_vocab SELECT DISTINCT token FROM order_token;
-- In `search_key` form, as order_search's index: an SKU or e-mail address stays one trigram word.
CREATE INDEX order_token_vocab_key ON order_token_vocab USING gin (search_key(token) public.gin_trgm_ops);

-- New tokens go into the vocabulary in token order, so two concurrent batches sharing new tokens wait for each
-- other in the same order (no deadlock); known ones are skipped before the insert is tried.
CREATE FUNCTION order_token_inserted() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO order_token SELECT w, number, placed_at, paid_at FROM inserted, search_tokens(search_text) w;
    INSERT INTO order_token_vocab
    SELECT DISTINCT w FROM inserted, search_tokens(search_text) w
    WHERE NOT EXISTS (SELECT 1 FROM order_token_vocab v WHERE v.token = w) ORDER BY w
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE FUNCTION order_token_updated() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.search_text IS DISTINCT FROM NEW.search_text OR OLD.number IS DISTINCT FROM NEW.number THEN
        DELETE FROM order_token WHERE number = OLD.number;
        INSERT INTO order_token SELECT w, NEW.number, NEW.placed_at, NEW.paid_at FROM search_tokens(NEW.search_text) w;
        INSERT INTO order_token_vocab
        SELECT w FROM search_tokens(NEW.search_text) w
        WHERE NOT EXISTS (SELECT 1 FROM order_token_vocab v WHERE v.token = w) ORDER BY w
        ON CONFLICT DO NOTHING;
    ELSE  -- a payment (or a corrected placement date): the sort dates only
        UPDATE order_token SET placed_at = NEW.placed_at, paid_at = NEW.paid_at WHERE number = OLD.number;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION order_token_deleted() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM order_token t USING deleted d WHERE t.number = d.number;
    RETURN NULL;
END $$;

CREATE FUNCTION order_token_truncated() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    TRUNCATE order_token;  -- the vocabulary may keep its tokens (a superset is safe)
    RETURN NULL;
END $$;

CREATE TRIGGER order_token_inserted AFTER INSERT ON orders REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION order_token_inserted();
CREATE TRIGGER order_token_updated AFTER UPDATE ON orders FOR EACH ROW
    WHEN (OLD.number IS DISTINCT FROM NEW.number OR OLD.placed_at IS DISTINCT FROM NEW.placed_at
          OR OLD.paid_at IS DISTINCT FROM NEW.paid_at OR OLD.search_text IS DISTINCT FROM NEW.search_text)
    EXECUTE FUNCTION order_token_updated();
CREATE TRIGGER order_token_deleted AFTER DELETE ON orders REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION order_token_deleted();
CREATE TRIGGER order_token_truncated AFTER TRUNCATE ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_token_truncated();

-- Postgres' estimate of a token's rows decides whether a filtered page walks the token's index or reads the
-- token's rows and sorts them: with the default 100 most-common values a shop's ~600 SKUs fall outside the list
-- and every SKU is guessed at ~180 rows (mug-navy-xs has 3,351 at 1M orders).
ALTER TABLE order_token ALTER COLUMN token SET STATISTICS 1000;
ANALYZE order_token;
ANALYZE order_token_vocab;
