-- depends: shared_0001_backbone
-- The fulfillment service's tables (schema `fulfillment`).

-- Stock per SKU per location. The database itself refuses a negative level or more reserved than on hand;
-- the use cases also update conditionally (`... WHERE on_hand - reserved >= q`), so two orders racing for
-- the last unit never both get it, whatever the number of processes.
CREATE TABLE stock_levels (
    sku         text        NOT NULL,
    location    text        NOT NULL,
    on_hand     bigint      NOT NULL DEFAULT 0,
    reserved    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location),
    CONSTRAINT stock_on_hand_not_negative CHECK (on_hand >= 0),
    CONSTRAINT stock_reserved_not_negative CHECK (reserved >= 0),
    CONSTRAINT stock_reserved_within_on_hand CHECK (reserved <= on_hand)
);

-- Every change of a level, with the values after it: the movement history (append-only).
CREATE TABLE stock_movements (
    id              bigserial   PRIMARY KEY,
    movement_id     uuid        NOT NULL UNIQUE,
    sku             text        NOT NULL,
    location        text        NOT NULL,
    delta_on_hand   bigint      NOT NULL,
    delta_reserved  bigint      NOT NULL,
    on_hand_after   bigint      NOT NULL,
    reserved_after  bigint      NOT NULL,
    reason          text        NOT NULL,
    order_id        uuid,
    order_number    bigint,
    actor           jsonb       NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_movements_sku ON stock_movements (sku, id);

-- The order as fulfillment knows it, from order.placed.v1 (and stage, address, customer changes).
-- `fulfillment_status` is computed from shipments and quantities (FULFILLMENT_RULES), never set by hand.
CREATE TABLE fulfillment_orders (
    order_id            uuid        PRIMARY KEY,
    number              bigint      NOT NULL,
    test                boolean     NOT NULL DEFAULT false,
    stage               text        NOT NULL,
    channel             text        NOT NULL,
    currency            text        NOT NULL,
    items               jsonb       NOT NULL,   -- [{line_id, sku, name, quantity, unit_price, line_total}]
    subtotal            numeric(20, 3) NOT NULL,
    shipping            numeric(20, 3) NOT NULL DEFAULT 0,
    discount            numeric(20, 3) NOT NULL DEFAULT 0,
    tax                 numeric(20, 3) NOT NULL DEFAULT 0,
    total               numeric(20, 3) NOT NULL,
    customer            jsonb       NOT NULL,
    address             jsonb,
    payment_method      text,
    customer_note       text,
    placed_at           timestamptz NOT NULL,
    packed              boolean     NOT NULL DEFAULT false,
    fulfillment_status  text        NOT NULL DEFAULT 'unfulfilled',
    reservation         text        NOT NULL DEFAULT 'not_tracked'
        CHECK (reservation IN ('reserved', 'out_of_stock', 'released', 'consumed', 'not_tracked')),
    invoice_number      text        UNIQUE,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fulfillment_orders_status ON fulfillment_orders (fulfillment_status);

-- Units reserved now for an order line at a location (rows go to 0 or away as units are consumed/released).
-- A stock level's `reserved` is the sum of these (`oms fulfillment reconcile` checks it).
CREATE TABLE reservations (
    order_id    uuid        NOT NULL REFERENCES fulfillment_orders (order_id),
    line_id     text        NOT NULL,
    sku         text        NOT NULL,
    location    text        NOT NULL,
    quantity    bigint      NOT NULL CHECK (quantity >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line_id, location)
);
CREATE INDEX reservations_level ON reservations (sku, location);

-- One shipment per fulfillment (split delivery). `consumed`: the stock its hand-over took, per location.
CREATE TABLE shipments (
    id                uuid        PRIMARY KEY,
    order_id          uuid        NOT NULL REFERENCES fulfillment_orders (order_id),
    rank              integer     NOT NULL,
    number            text        NOT NULL UNIQUE,
    kind              text        NOT NULL CHECK (kind IN ('manual', 'carrier')),
    shipping_point    text        NOT NULL,
    status            text        NOT NULL,
    location          text        NOT NULL,
    carrier           text,
    service           text,
    tracking_number   text,
    tracking_url      text,
    expected_delivery date,
    label_id          text        UNIQUE,
    label_cost        numeric(20, 3),
    label_currency    text,
    consumed          jsonb       NOT NULL DEFAULT '[]',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, rank)
);
CREATE INDEX shipments_tracking ON shipments (tracking_number);

CREATE TABLE shipment_lines (
    shipment_id uuid    NOT NULL REFERENCES shipments (id),
    line_id     text    NOT NULL,
    sku         text    NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (shipment_id, line_id)
);

-- A shipment's tracking history: every update, applied or not (a late or duplicated one: applied = false).
CREATE TABLE tracking_events (
    id          bigserial   PRIMARY KEY,
    shipment_id uuid        NOT NULL REFERENCES shipments (id),
    status      text        NOT NULL,
    at          timestamptz NOT NULL,
    description text,
    location    text,
    source      text        NOT NULL CHECK (source IN ('staff', 'carrier', 'system')),
    applied     boolean     NOT NULL,
    event_id    text        UNIQUE,           -- the carrier webhook's id: a redelivery is recorded once
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracking_events_shipment ON tracking_events (shipment_id, id);

CREATE TABLE returns (
    id          uuid        PRIMARY KEY,
    order_id    uuid        NOT NULL REFERENCES fulfillment_orders (order_id),
    reason      text,
    actor       jsonb       NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX returns_order ON returns (order_id);

CREATE TABLE return_lines (
    return_id   uuid    NOT NULL REFERENCES returns (id),
    position    integer NOT NULL,
    line_id     text    NOT NULL,
    sku         text    NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    restock     boolean NOT NULL,
    location    text    NOT NULL,
    PRIMARY KEY (return_id, position)
);

-- Label purchases by the client's Idempotency-Key: a retried "buy label" answers the same shipment.
CREATE TABLE label_purchases (
    order_id        uuid        NOT NULL,
    idempotency_key text        NOT NULL,
    shipment_id     uuid        NOT NULL REFERENCES shipments (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, idempotency_key)
);

-- Invoice numbers (INV-000001...), assigned once per order at its first invoice and kept.
CREATE SEQUENCE invoice_numbers START 1;
