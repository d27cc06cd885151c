-- depends: 0003_staff
-- Saved views of the order list (issue #13): a name and the list's filters, sort and search, shared by the whole
-- team (not per person). `query` holds only the order list's own query parameters (checked by the gateway
-- against the orders contract's OrderQuery before it is stored). Applied with search_path=gateway.
CREATE TABLE saved_views (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL,
    query       jsonb       NOT NULL,
    created_by  text        NOT NULL,
    updated_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- One view per name, whatever the case: "Unpaid today" and "unpaid today" would be the same view to a person.
CREATE UNIQUE INDEX saved_views_name ON saved_views (lower(name));
