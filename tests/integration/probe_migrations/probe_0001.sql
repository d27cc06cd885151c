-- depends: shared_0001_backbone
CREATE TABLE effects (
    n          bigserial PRIMARY KEY,       -- the order effects were applied in
    event_id   uuid        NOT NULL,
    subject    text        NOT NULL,
    sequence   bigint      NOT NULL,
    text       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE switches (name text PRIMARY KEY);
CREATE TABLE attempts (event_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
