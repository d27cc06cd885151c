-- depends: 0002_capture_method
-- Refunds of money taken by hand (cash, bank transfer, POS) are paid out by staff, who confirm it here.
-- The ledger stays append-only: a pay-out is a fact about a refund, not a change of the money moved.
CREATE TABLE manual_payouts (
    order_id     uuid        NOT NULL REFERENCES payment_orders (order_id),
    reference    text        NOT NULL,
    paid_out_at  timestamptz NOT NULL DEFAULT now(),
    actor        jsonb       NOT NULL,
    note         text,
    PRIMARY KEY (order_id, reference)
);
-- The staff worklist: manual refunds, oldest first.
CREATE INDEX ledger_entries_manual_refunds ON ledger_entries (at, order_id) WHERE kind = 'manual_refund';
