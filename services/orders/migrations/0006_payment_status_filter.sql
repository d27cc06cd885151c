-- depends: 0005_fulfillment
-- The order list filters by payment status (issue #13, the dashboard's filter). Orders payments has not reported
-- on yet have no status and count as unpaid, hence the expression; newest (or oldest) first within a status is
-- read off this index like the stage's and the fulfillment status's.
CREATE INDEX orders_payment_status_placed ON orders ((coalesce(payment_status, 'unpaid')), placed_at, number);
