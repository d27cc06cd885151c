-- depends: 0002_revocation_notify
-- Staff who sign in to the dashboard, their sessions, the sign-in rate limit, and a role for every API key.

-- Staff users. The password is stored as an argon2id hash (argon2-cffi's encoded form, parameters included).
-- A disabled user keeps its row (the timelines name it) but cannot sign in and has no session.
CREATE TABLE staff_users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL,
    name          text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('owner', 'staff', 'viewer')),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);
CREATE UNIQUE INDEX staff_users_email ON staff_users (lower(email));

-- Sessions: the cookie holds a random token, the table only its SHA-256 (a stolen table opens no session).
-- The CSRF token is the one the page echoes in X-CSRF-Token (it is not a secret from the signed-in user).
CREATE TABLE staff_sessions (
    token_hash  text        PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES staff_users (id) ON DELETE CASCADE,
    csrf_token  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    client_addr text
);
CREATE INDEX staff_sessions_user ON staff_sessions (user_id);
CREATE INDEX staff_sessions_expires ON staff_sessions (expires_at);

-- Failed sign-ins, one row each, keyed by 'email:<lower email>' and 'addr:<client address>': every gateway
-- process counts the same rows, so the limit holds however many processes run.
CREATE TABLE signin_failures (
    key     text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signin_failures_key_at ON signin_failures (key, at);

-- API keys get a role; the keys made before roles existed are owners, so machines keep working.
ALTER TABLE api_keys ADD COLUMN role text NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'staff', 'viewer'));

-- Idempotency records now belong to a caller that is an API key or a staff user (ids are UUIDs either way).
ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_api_key_id_fkey;
