-- Stock per SKU. Conservation and "never below zero" are enforced here, not only in code.
CREATE TABLE stock (
    sku       text PRIMARY KEY,
    initial   bigint NOT NULL CHECK (initial >= 0),
    available bigint NOT NULL CHECK (available >= 0),
    held      bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    committed bigint NOT NULL DEFAULT 0 CHECK (committed >= 0),
    CHECK (initial = available + held + committed)
);

-- One row per order this participant has seen: the natural key of every effect.
-- held -> committed | released on the decision; refused (voted no); aborted (Abort before Prepare).
CREATE TABLE holds (
    order_id   text PRIMARY KEY,
    vote       text NOT NULL CHECK (vote IN ('yes', 'no')),
    state      text NOT NULL CHECK (state IN ('held', 'committed', 'released', 'refused', 'aborted')),
    reason     text,
    amounts    jsonb NOT NULL DEFAULT '{}',  -- {sku: quantity} held for this order
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX holds_held ON holds (state) WHERE state = 'held';
