-- depends: shared_0001_backbone
-- The payments service's tables (schema `payments`).

-- The order as payments knows it, from order.placed.v1 / order.payment_method_set.v1 / order.stage_changed.v1.
-- `status` and `paid_at` are the last computed payment status (derived from the ledger, never set by hand).
CREATE TABLE payment_orders (
    order_id        uuid        PRIMARY KEY,
    number          bigint      NOT NULL,
    currency        text        NOT NULL,
    total           numeric(20, 3) NOT NULL,
    lines           jsonb       NOT NULL,
    shipping        numeric(20, 3) NOT NULL DEFAULT 0,
    discount        numeric(20, 3) NOT NULL DEFAULT 0,
    tax             numeric(20, 3) NOT NULL DEFAULT 0,
    payment_method  text,
    test            boolean     NOT NULL DEFAULT false,
    stage           text        NOT NULL,
    status          text        NOT NULL DEFAULT 'unpaid',
    paid_at         timestamptz,
    on_hold_reason  text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Append-only money movements per order; the unique key makes recording a movement idempotent.
CREATE TABLE ledger_entries (
    id          bigserial   PRIMARY KEY,
    order_id    uuid        NOT NULL REFERENCES payment_orders (order_id),
    kind        text        NOT NULL,
    amount      numeric(20, 3) NOT NULL,
    currency    text        NOT NULL,
    payment_id  text        NOT NULL,
    reference   text        NOT NULL,
    at          timestamptz NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}',
    UNIQUE (order_id, kind, payment_id, reference)
);
CREATE INDEX ledger_entries_payment ON ledger_entries (payment_id);

-- Payment attempts: a manual receipt, or a card payment link (provider_ref = the provider's payment id).
CREATE TABLE payments (
    id            text        PRIMARY KEY,
    order_id      uuid        NOT NULL REFERENCES payment_orders (order_id),
    method        text        NOT NULL,
    provider_ref  text,
    link_id       text        UNIQUE,
    link_url      text,
    amount        numeric(20, 3) NOT NULL,
    status        text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_order ON payments (order_id);
CREATE INDEX payments_provider_ref ON payments (provider_ref);

-- Provider webhooks already applied (webhook-id is stable across retries and duplicates).
CREATE TABLE processed_webhooks (
    webhook_id   text        PRIMARY KEY,
    event_type   text        NOT NULL,
    order_id     uuid,
    processed_at timestamptz NOT NULL DEFAULT now()
);
