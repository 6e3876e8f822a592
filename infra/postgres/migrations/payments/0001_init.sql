-- Customer balances in integer cents. Conservation and "never below zero" are enforced here.
CREATE TABLE accounts (
    customer_id    text PRIMARY KEY,
    initial_cents  bigint NOT NULL CHECK (initial_cents >= 0),
    balance_cents  bigint NOT NULL CHECK (balance_cents >= 0),
    held_cents     bigint NOT NULL DEFAULT 0 CHECK (held_cents >= 0),
    captured_cents bigint NOT NULL DEFAULT 0 CHECK (captured_cents >= 0),
    CHECK (initial_cents = balance_cents + held_cents + captured_cents)
);

-- One row per order this participant has seen: the natural key of every effect.
-- held -> committed (captured) | released (voided); refused (voted no); aborted (Abort before Prepare).
CREATE TABLE holds (
    order_id   text PRIMARY KEY,
    vote       text NOT NULL CHECK (vote IN ('yes', 'no')),
    state      text NOT NULL CHECK (state IN ('held', 'committed', 'released', 'refused', 'aborted')),
    reason     text,
    amounts    jsonb NOT NULL DEFAULT '{}',  -- {customer_id: cents} authorised for this order
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX holds_held ON holds (state) WHERE state = 'held';
