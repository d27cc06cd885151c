-- depends: 0001_notifications
-- Staff alerts raised from events, and the order timeline (the order's whole story across services).

-- An alert raised from an event is raised once per (event, kind): a redelivered event finds its row and
-- raises nothing (alerts raised by the service itself, e.g. message_failed, have no event and are not bound).
ALTER TABLE alerts ADD COLUMN event_id uuid;
CREATE UNIQUE INDEX alerts_event_kind ON alerts (event_id, kind);
-- The live stream filtered by kind: `WHERE kind = ANY(..) AND id > last ORDER BY id`.
CREATE INDEX alerts_kind_id ON alerts (kind, id);

-- One entry per event of orders, payments and fulfillment about an order. `sequence` is the event's
-- per-order sequence at its source: entries of the same instant keep the publisher's order.
CREATE TABLE timeline_entries (
    id        bigserial   PRIMARY KEY,
    event_id  uuid        NOT NULL UNIQUE,
    order_id  uuid        NOT NULL,
    source    text        NOT NULL,
    kind      text        NOT NULL,
    sequence  bigint      NOT NULL,
    at        timestamptz NOT NULL,
    summary   text        NOT NULL,
    actor     jsonb,
    data      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX timeline_entries_order ON timeline_entries (order_id, at, sequence, id);
