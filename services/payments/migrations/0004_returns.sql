-- depends: 0003_manual_payouts
-- Returned units (issue #11): fulfillment.return_recorded.v1 says which units of which line came back; the
-- refund preview offers those not refunded yet. One row per (return, line): recording a return twice is a no-op.
CREATE TABLE returned_units (
    order_id   uuid        NOT NULL REFERENCES payment_orders (order_id),
    return_id  uuid        NOT NULL,
    line_id    text        NOT NULL,
    quantity   integer     NOT NULL CHECK (quantity > 0),
    at         timestamptz NOT NULL,
    PRIMARY KEY (order_id, return_id, line_id)
);
