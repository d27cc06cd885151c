-- depends:
-- The gateway's own tables: API keys and idempotency records. Applied with search_path=gateway.

-- API keys: `oms_<prefix>_<secret>`. Only the SHA-256 of the whole key is stored; the 8-character prefix
-- is public (shown in listings, used to find the row) and unique.
CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL,
    prefix       text        NOT NULL UNIQUE,
    key_hash     text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Idempotency-Key records, one per (API key, client key). A request first inserts `in_progress`, then
-- stores the answer (`done`) that later retries replay. Rows expire 24 hours after `created_at`.
CREATE TABLE idempotency_keys (
    api_key_id       uuid        NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    key              text        NOT NULL,
    method           text        NOT NULL,
    path             text        NOT NULL,
    request_hash     text        NOT NULL,
    state            text        NOT NULL DEFAULT 'in_progress' CHECK (state IN ('in_progress', 'done')),
    status_code      integer,
    response_body    jsonb,
    response_headers jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
