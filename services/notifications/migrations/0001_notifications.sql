-- depends: shared_0001_backbone
-- The notifications service's tables (schema `notifications`).

-- What notifications knows of each order (from order.placed / customer_changed / address_set / stage_changed):
-- enough to choose a channel and to fill a template without calling back.
CREATE TABLE order_copies (
    order_id    uuid        PRIMARY KEY,
    number      bigint      NOT NULL,
    test        boolean     NOT NULL DEFAULT false,
    channel     text        NOT NULL,
    stage       text        NOT NULL,
    customer    jsonb       NOT NULL,   -- {name, phone, email}
    address     jsonb,
    language    text,                   -- null: the store's language
    currency    text        NOT NULL,
    total       numeric(20, 3) NOT NULL,
    items       jsonb       NOT NULL,   -- [{sku, name, quantity, line_total}]
    placed_at   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Per customer phone, the last message they wrote on WhatsApp: the 24-hour customer-service window.
CREATE TABLE whatsapp_windows (
    phone             text        PRIMARY KEY,
    last_inbound_at   timestamptz NOT NULL
);

-- One row per message: exactly one per (event, kind, channel, recipient). The row (status queued, its
-- idempotency key) is committed BEFORE the provider is called; the sender claims due rows with
-- FOR UPDATE SKIP LOCKED and `claimed_until` (a crashed sender's claim runs out and the row is sent again
-- with the same key).
CREATE TABLE messages (
    id                  uuid        PRIMARY KEY,
    event_id            uuid,                   -- null: a staff resend's or a fallback's origin is the row linked
    kind                text        NOT NULL,
    channel             text        NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp')),
    recipient           text        NOT NULL,
    language            text        NOT NULL,
    order_id            uuid,
    number              bigint,
    test                boolean     NOT NULL DEFAULT false,
    redirected          boolean     NOT NULL DEFAULT false,
    status              text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'retrying', 'sent', 'delivered', 'read', 'failed')),
    idempotency_key     uuid        NOT NULL UNIQUE,
    attempts            integer     NOT NULL DEFAULT 0,
    resends             integer     NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    claimed_until       timestamptz,
    provider_message_id text,
    reason              text,
    context             jsonb       NOT NULL,   -- the template context, fixed when the event arrived
    subject             text,
    text                text        NOT NULL DEFAULT '',
    html                text,
    fallback_of         uuid        REFERENCES messages (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, kind, channel, recipient)
);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX messages_by_provider_id ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX messages_by_order ON messages (order_id, created_at);
CREATE INDEX messages_by_status ON messages (status, created_at, id);
CREATE INDEX messages_listed ON messages (created_at, id);

-- Every status a message took, with why (attempts, receipts, staff resends).
CREATE TABLE message_history (
    id           bigserial   PRIMARY KEY,
    message_id   uuid        NOT NULL REFERENCES messages (id),
    from_status  text,
    status       text        NOT NULL,
    reason       text,
    source       text        NOT NULL,   -- sender | receipt | staff | event
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_history_by_message ON message_history (message_id, id);

-- Staff overrides of the shipped default templates (services/notifications/templating/defaults/).
CREATE TABLE templates (
    kind               text        NOT NULL,
    channel            text        NOT NULL,
    language           text        NOT NULL,
    subject            text,
    text               text        NOT NULL,
    html               text,
    whatsapp_template  text,
    whatsapp_params    jsonb       NOT NULL DEFAULT '[]',
    updated_at         timestamptz NOT NULL DEFAULT now(),
    updated_by         jsonb,
    PRIMARY KEY (kind, channel, language)
);

-- The store's notification settings: one row, read at each batch (a change is effective at once).
CREATE TABLE settings (
    id              integer     PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    kinds           jsonb       NOT NULL DEFAULT '{}',   -- kind -> {enabled, channels, stages}
    language        text,
    store_email     text,
    test_recipient  text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      jsonb
);

-- Staff alerts (the live stream's source; the id is the SSE event id). Written here for message_failed and by
-- usecases/alerts.py for the rest.
CREATE TABLE alerts (
    id        bigserial   PRIMARY KEY,
    kind      text        NOT NULL,
    order_id  uuid,
    number    bigint,
    test      boolean     NOT NULL DEFAULT false,
    title     text        NOT NULL,
    text      text        NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
