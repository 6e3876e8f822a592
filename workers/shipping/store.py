"""The shipping database's SQL, in one module: one shipment row per confirmed order. The worker,
verify, report, seeding and the sandbox all go through it. Every function takes an open cursor;
the caller owns the transaction."""

from __future__ import annotations

from infra.postgres.databases import DATABASE as DATABASE_OF
from workers.runtime.db import execute_values

DATABASE = DATABASE_OF["shipping"]


def book(cur, order_ids: list[str]) -> None:
    """One shipment per order, however often it is booked (the order id is the key)."""
    execute_values(
        cur,
        "INSERT INTO shipments (order_id) VALUES %s ON CONFLICT DO NOTHING",
        [(o,) for o in order_ids],
    )


def shipped(cur) -> set[str]:
    cur.execute("SELECT order_id FROM shipments")
    return {r[0] for r in cur.fetchall()}


def booked_at(cur, order_id: str):
    """When the order's shipment was booked (a datetime), or None."""
    cur.execute("SELECT booked_at FROM shipments WHERE order_id = %s", (order_id,))
    row = cur.fetchone()
    return None if row is None else row[0]


def clear(cur) -> None:
    cur.execute("DELETE FROM shipments")
