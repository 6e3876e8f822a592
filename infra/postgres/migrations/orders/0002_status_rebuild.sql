-- Where `orderbus replay rebuild status` folds orders.status before it compares and swaps: a
-- table of its own, so a rebuild changes rows only, as the service's role may. (IF NOT EXISTS: a
-- rebuild before this migration made the same table itself.)
CREATE TABLE IF NOT EXISTS order_status_rebuild (LIKE order_status INCLUDING ALL);
