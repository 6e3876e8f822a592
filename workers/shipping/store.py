"""The shipping database's SQL, in one module: one shipment row per confirmed order. The worker,
verify, report, seeding and the sandbox all go through it. Every function takes an open cursor;
the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

from infra.postgres.databases import DATABASE as DATABASE_OF
from workers.runtime.db import Cursor, execute_values

DATABASE = DATABASE_OF["shipping"]


def book(cur: Cursor, order_ids: list[str]) -> None:
    """One shipment per order, however often it is booked (the order id is the key)."""
    execute_values(
        cur,
        "INSERT INTO shipments (order_id) VALUES %s ON CONFLICT DO NOTHING",
        [(o,) for o in order_ids],
    )


def shipped(cur: Cursor) -> set[str]:
    cur.execute("SELECT order_id FROM shipments")
    return {r[0] for r in cur.fetchall()}


def booked_at(cur: Cursor, order_id: str) -> datetime | None:
    """When the order's shipment was booked (a datetime), or None."""
    cur.execute("SELECT booked_at FROM shipments WHERE order_id = %s", (order_id,))
    row = cur.fetchone()
    if row is None:
        return None
    at: datetime = row[0]
    return at


def clear(cur: Cursor) -> None:
    cur.execute("DELETE FROM shipments")
