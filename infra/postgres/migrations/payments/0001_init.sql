-- Customer balances in integer cents. Conservation and "never below zero" are enforced here.
CREATE TABLE accounts (
    customer_id    text PRIMARY KEY,
    currency       char(3) NOT NULL DEFAULT 'EUR',
    initial_cents  bigint NOT NULL CHECK (initial_cents >= 0),
    balance_cents  bigint NOT NULL CHECK (balance_cents >= 0),
    held_cents     bigint NOT NULL DEFAULT 0 CHECK (held_cents >= 0),
    captured_cents bigint NOT NULL DEFAULT 0 CHECK (captured_cents >= 0),
    CHECK (initial_cents = balance_cents + held_cents + captured_cents)
);

-- One row per order this participant has seen: the natural key of every effect.
CREATE TABLE authorizations (
    order_id     text PRIMARY KEY,
    customer_id  text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    vote         text NOT NULL CHECK (vote IN ('yes', 'no')),
    state        text NOT NULL CHECK (state IN ('held', 'captured', 'voided', 'refused', 'aborted')),
    reason       text,
    changed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX authorizations_held ON authorizations (state) WHERE state = 'held';
