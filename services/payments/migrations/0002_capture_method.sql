-- depends: 0001_payments
-- Authorize-then-capture: a card link remembers whether paying it captures at once or only authorizes.
ALTER TABLE payments ADD COLUMN capture_method text NOT NULL DEFAULT 'automatic'
    CHECK (capture_method IN ('automatic', 'manual'));
