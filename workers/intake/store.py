"""Intake's database, `orders`: every order it has begun, keyed by order id, with the content
hash and source coordinates that tell a redelivery from a republish or a reused id. The only
module that spells the table; intake and the operator tools (report, top, seeding) call it.
Every function takes an open cursor; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from infra.postgres.databases import DATABASE as DATABASE_OF
from workers.intake.core import Seen
from workers.runtime.db import LOCK_EACH_ID, Cursor, Json, values

DATABASE = DATABASE_OF["intake"]
# (order id, customer id, currency, total cents, content hash, body, source partition,
# source offset): an order as `record` takes it
OrderRow = tuple[str, str, str, int, str, dict[str, Any], int, int]


def seen(cur: Cursor, order_ids: list[str]) -> dict[str, Seen]:
    """What is recorded of these orders, by id, as it stays until the caller's transaction ends.
    A lock per order id comes first: two instances given the same id at once (copies on two
    partitions) would otherwise both find it new and both begin it. The second waits for the
    first to commit and then reads its record. Taken in key order, so two batches never
    deadlock on a pair of ids."""
    cur.execute(  # one round trip: the locks, then the read
        LOCK_EACH_ID + "SELECT order_id, content_hash, source_partition, source_offset FROM orders "
        "WHERE order_id = ANY(%(ids)s)",
        {"ids": order_ids},
    )
    return {r[0]: Seen(r[1], r[2], r[3]) for r in cur.fetchall()}


def record(cur: Cursor, rows: list[OrderRow]) -> None:
    """Record new orders: (order id, customer id, currency, total cents, content hash, body
    dict, source partition, source offset) each; one already recorded is left as it was."""
    cur.execute(recording(cur, rows))


def recording(cur: Cursor, rows: list[OrderRow]) -> bytes:
    """The statement `record` runs, for a caller that sends more with it in one round trip."""
    wrapped = [(*r[:5], Json(r[5]), *r[6:]) for r in rows]
    return (
        b"INSERT INTO orders (order_id, customer_id, currency, total_cents, content_hash, body, "
        b"source_partition, source_offset) VALUES "
        + values(cur, "(%s, %s, %s, %s, %s, %s, %s, %s)", wrapped)
        + b" ON CONFLICT (order_id) DO NOTHING"
    )


def count_placed(cur: Cursor) -> int:
    cur.execute("SELECT count(*) FROM orders")
    return int(cur.fetchone()[0])


def order_of(cur: Cursor, order_id: str) -> tuple[str, int, str, datetime] | None:
    """(customer id, total cents, currency, recorded at) of one order, or None."""
    cur.execute(
        "SELECT customer_id, total_cents, currency, recorded_at FROM orders WHERE order_id = %s",
        (order_id,),
    )
    row: tuple[str, int, str, datetime] | None = cur.fetchone()
    return row


def clear(cur: Cursor) -> None:
    cur.execute("DELETE FROM orders")
