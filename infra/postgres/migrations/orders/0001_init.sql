-- Orders accepted by intake, and the order-status read model built from orders.status.
CREATE TABLE orders (
    order_id         text PRIMARY KEY,
    customer_id      text NOT NULL,
    currency         char(3) NOT NULL,
    total_cents      bigint NOT NULL CHECK (total_cents >= 0),
    content_hash     text NOT NULL,          -- a reused order id with other content is a dead letter
    body             jsonb NOT NULL,
    source_partition integer NOT NULL,       -- where it was first read: a redelivery of the same
    source_offset    bigint NOT NULL,        -- offset re-emits, a republish elsewhere is a no-op
    recorded_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_status (
    order_id   text PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED', 'SHIPPED')),
    reason     text,
    changed_ms bigint NOT NULL
);
CREATE INDEX order_status_by_status ON order_status (status);
