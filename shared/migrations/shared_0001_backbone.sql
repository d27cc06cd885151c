-- The event backbone's tables, created in every service schema that publishes or consumes events.

-- Events waiting to be published; written in the same transaction as the state change they announce.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    event_type   text        NOT NULL,
    subject      text        NOT NULL,
    sequence     bigint      NOT NULL,
    correlation_id text      NOT NULL,
    payload      text        NOT NULL,          -- the CloudEvent JSON, exactly as it will be sent
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Gapless per-subject sequence: the row lock also orders the events of one order across transactions.
CREATE TABLE event_streams (
    subject       text   PRIMARY KEY,
    last_sequence bigint NOT NULL
);

-- Wake the relay the moment a transaction that wrote events commits (NOTIFY is delivered at commit).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Idempotent consumers: one row per (handler, event) written with the handler's effect.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- Ordering: the last sequence a handler applied per (source, subject); early events wait in parked.
CREATE TABLE inbox_positions (
    consumer      text        NOT NULL,
    source        text        NOT NULL,
    subject       text        NOT NULL,
    last_sequence bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, source, subject)
);
CREATE TABLE inbox_parked (
    consumer  text        NOT NULL,
    source    text        NOT NULL,
    subject   text        NOT NULL,
    sequence  bigint      NOT NULL,
    event     text        NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, source, subject, sequence)
);
