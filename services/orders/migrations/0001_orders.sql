-- depends: shared_0001_backbone
-- The orders service's tables (schema `orders`).
--
-- An order is stored whole as a JSON document (`doc`, the domain's Order) next to the columns that lists,
-- filters, search and sorting need, so reading an order is one row and writing one is one statement.

CREATE SEQUENCE order_number_seq START 1001;

CREATE TABLE orders (
    id              uuid        PRIMARY KEY,
    number          bigint      NOT NULL UNIQUE,
    channel         text        NOT NULL,
    stage           text        NOT NULL,
    test            boolean     NOT NULL DEFAULT false,
    currency        text        NOT NULL,
    total           numeric(20, 3) NOT NULL,
    customer_name   text        NOT NULL,
    customer_phone  text,
    customer_email  text,
    search_text     text        NOT NULL,   -- lower-cased name, phone digits, e-mail and SKUs, for search
    payment_method  text,
    payment_status  text,
    paid_at         timestamptz,
    placed_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         integer     NOT NULL,
    idempotency_key text        UNIQUE,     -- "<actor id>:<Idempotency-Key>" of the request that placed it
    request_hash    text,
    doc             jsonb       NOT NULL
);

-- Keyset pagination by order date (either direction), optionally within one stage or one channel.
CREATE INDEX orders_placed ON orders (placed_at, number);
CREATE INDEX orders_stage_placed ON orders (stage, placed_at, number);
CREATE INDEX orders_channel_placed ON orders (channel, placed_at, number);
-- Sorting by payment completion: unpaid orders last in both directions.
CREATE INDEX orders_paid_asc ON orders ((coalesce(paid_at, 'infinity'::timestamptz)), number);
CREATE INDEX orders_paid_desc ON orders ((coalesce(paid_at, '-infinity'::timestamptz)), number);
-- Substring search on customer name, phone, e-mail and SKU.
CREATE INDEX orders_search ON orders USING gin (search_text public.gin_trgm_ops);
-- The abandonment timer looks only at placed orders, oldest first.
CREATE INDEX orders_placed_only ON orders (placed_at) WHERE stage = 'placed';

CREATE TABLE order_history (
    order_id   uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    seq        integer     NOT NULL,
    at         timestamptz NOT NULL,
    actor      jsonb       NOT NULL,
    action     text        NOT NULL,
    from_stage text,
    to_stage   text,
    reason     text,
    data       jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (order_id, seq)
);
