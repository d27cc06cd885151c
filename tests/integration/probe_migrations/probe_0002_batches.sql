-- depends: probe_0001
-- What the batch probe (tests.integration.probe_service.BatchProbeService) records.
CREATE TABLE batch_effects (
    n          bigserial PRIMARY KEY,       -- the order effects were applied in
    consumer   text        NOT NULL,
    event_id   uuid        NOT NULL,
    event_type text        NOT NULL,
    subject    text        NOT NULL,
    sequence   bigint      NOT NULL,
    text       text        NOT NULL,
    pid        int         NOT NULL DEFAULT pg_backend_pid()
);
CREATE TABLE batch_attempts (consumer text NOT NULL, event_id uuid NOT NULL, batch int NOT NULL);
-- A row here fails the COMMIT (the reference is checked at commit time) unless switches holds its name.
CREATE TABLE commit_traps (
    name text NOT NULL REFERENCES switches (name) DEFERRABLE INITIALLY DEFERRED
);
