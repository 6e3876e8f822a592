"""Intake's `orders` table as the operator tools read and clear it. Its SQL belongs beside the
intake worker's own (a `workers/intake/store.py`) and moves there when that worker is next
changed; until then this is the one module outside the worker that spells the table. Every
function takes an open cursor on `DATABASE`; the caller owns the transaction."""
from __future__ import annotations

from infra.postgres.databases import DATABASE as DATABASE_OF

DATABASE = DATABASE_OF["intake"]


def count_placed(cur) -> int:
    cur.execute("SELECT count(*) FROM orders")
    return cur.fetchone()[0]


def order_of(cur, order_id: str) -> tuple | None:
    """(customer id, total cents, currency, recorded at) of one order, or None."""
    cur.execute("SELECT customer_id, total_cents, currency, recorded_at FROM orders "
                "WHERE order_id = %s", (order_id,))
    return cur.fetchone()


def clear(cur) -> None:
    cur.execute("DELETE FROM orders")
