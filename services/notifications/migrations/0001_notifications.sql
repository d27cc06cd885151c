-- depends: shared_0001_backbone
-- PLACEHOLDER written on branch h-nalerts so its alerts/timeline code can be migrated and tested before N-core
-- lands: only the `alerts` table, exactly as N-core's 0001 creates it. When merging, take N-core's file.

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
