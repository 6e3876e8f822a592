-- One shipment per confirmed order, exactly once (the primary key is the natural key).
CREATE TABLE shipments (
    order_id  text PRIMARY KEY,
    booked_at timestamptz NOT NULL DEFAULT now()
);
