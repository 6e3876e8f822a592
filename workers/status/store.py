"""The order-status read model's SQL, in one module: the live table the status worker folds
orders.status into, and the table a rebuild folds it into before the swap. The worker, the rebuild,
verify, the audit, report, top, seeding, the sandbox and the demo all go through it. Every
function takes an open cursor; the caller owns the transaction."""

from __future__ import annotations

from infra.postgres.databases import DATABASE as DATABASE_OF
from workers.runtime.db import Cursor, execute_values

DATABASE = DATABASE_OF["status"]
# (order id, status, reason, changed ms): a row of the read model
Row = tuple[str, str, str | None, int]
LIVE = "order_status"
REBUILD = "order_status_rebuild"
FINAL = ("SHIPPED", "REJECTED")  # nothing follows either

# a status only moves forward (PENDING < CONFIRMED | REJECTED < SHIPPED): a redelivered or late
# event never regresses a row
UPSERT = """
INSERT INTO {table} (order_id, status, reason, changed_ms) VALUES %s
ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason,
    changed_ms = EXCLUDED.changed_ms
WHERE (CASE {table}.status WHEN 'PENDING' THEN 0 WHEN 'SHIPPED' THEN 2 ELSE 1 END)
    < (CASE EXCLUDED.status WHEN 'PENDING' THEN 0 WHEN 'SHIPPED' THEN 2 ELSE 1 END)
"""


# Writes to the live table and a swap exclude each other: every write takes this advisory lock
# shared, inside its transaction; `replay rebuild status --execute` holds it exclusively, in its
# session, from before it reads the topic until the swap commits, so a status worker started
# meanwhile waits (retrying its batch) instead of writing rows the swap would then delete. Two
# int4 keys: a key space the one-bigint advisory locks elsewhere never meet.
WRITERS = (0x6F72_6465, 1)


def _writing(table: str) -> str:
    """What a write to `table` starts with, in the same round trip: the writers' lock, shared,
    when it is the live table."""
    return "SELECT pg_advisory_xact_lock_shared(%d, %d);" % WRITERS if table == LIVE else ""


def upsert(cur: Cursor, rows: list[Row], table: str = LIVE) -> None:
    """rows: (order id, status, reason, changed ms)."""
    if rows:
        execute_values(cur, _writing(table) + UPSERT.format(table=table), rows)


def add_pending(
    cur: Cursor, among: list[str] | None = None, table: str = LIVE, after: bytes = b""
) -> None:
    """A PENDING row for each order intake has recorded (those `among`, or all) that has no row
    yet: the status an order has from when intake begins it until its decision. Intake writes it
    in the transaction that records the order, sent after the statement `after` that records
    it (one round trip); a rebuild adds it for the orders still undecided. Its time is when
    intake recorded the order."""
    if among is not None and not among:
        return
    sql = (
        _writing(table) + f"INSERT INTO {table} (order_id, status, reason, changed_ms) "
        "SELECT order_id, 'PENDING', NULL, round(extract(epoch FROM recorded_at) * 1000)::bigint "
        "FROM orders"
        + ("" if among is None else " WHERE order_id = ANY(%s)")
        + " ON CONFLICT (order_id) DO NOTHING"
    )
    cur.execute(
        after + (b";" if after else b"") + cur.mogrify(sql, None if among is None else (among,))
    )


def exclude_writers(cur: Cursor) -> None:
    """Hold the writers' lock exclusively for the rest of this session (waits for the writes
    under way, at most the session's lock_timeout)."""
    cur.execute("SELECT pg_advisory_lock(%s, %s)", WRITERS)


# -- what the operators' tools read


def statuses(cur: Cursor, among: list[str] | None = None) -> dict[str, tuple[str, str | None]]:
    """order id -> (status, reason), of every order or of those `among`."""
    if among is None:
        cur.execute(f"SELECT order_id, status, reason FROM {LIVE}")
    else:
        cur.execute(
            f"SELECT order_id, status, reason FROM {LIVE} WHERE order_id = ANY(%s)", (among,)
        )
    return {r[0]: (r[1], r[2]) for r in cur.fetchall()}


def final_among(cur: Cursor, order_ids: list[str]) -> set[str]:
    """The orders among `order_ids` that are final (shipped or rejected)."""
    cur.execute(
        f"SELECT order_id FROM {LIVE} WHERE order_id = ANY(%s) AND status = ANY(%s)",
        (order_ids, list(FINAL)),
    )
    return {r[0] for r in cur.fetchall()}


def count_by_status(cur: Cursor) -> dict[str, int]:
    cur.execute(f"SELECT status, count(*) FROM {LIVE} GROUP BY status")
    return dict(cur.fetchall())


def rejected_by_reason(cur: Cursor) -> dict[str, int]:
    """reason -> rejected orders, the most frequent first."""
    cur.execute(
        f"SELECT coalesce(reason, 'unknown'), count(*) FROM {LIVE}"
        " WHERE status = 'REJECTED' GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    return dict(cur.fetchall())


def status_of(cur: Cursor, order_id: str) -> tuple[str, str | None, int] | None:
    """(status, reason, changed ms) of one order, or None."""
    cur.execute(f"SELECT status, reason, changed_ms FROM {LIVE} WHERE order_id = %s", (order_id,))
    row: tuple[str, str | None, int] | None = cur.fetchone()
    return row


# -- seeding and the rebuild


def clear(cur: Cursor, table: str = LIVE) -> None:
    cur.execute(f"DELETE FROM {table}")


def row_counts(cur: Cursor, table: str = REBUILD) -> tuple[int, int]:
    """(rows in the live table, rows in `table`)."""
    cur.execute(f"SELECT (SELECT count(*) FROM {LIVE}), (SELECT count(*) FROM {table})")
    live, rebuilt = cur.fetchone()
    return int(live), int(rebuilt)


# (order id, missing from live, missing from the other table, then status, reason and changed ms
# of each: None where missing)
Difference = tuple[
    str, bool, bool, str | None, str | None, int | None, str | None, str | None, int | None
]


def differences(cur: Cursor, table: str = REBUILD) -> list[Difference]:
    """The rows the live table and `table` disagree on, by order id: (order id, missing from
    live, missing from `table`, live status, reason, changed ms, the same in `table`)."""
    cur.execute(f"""
        SELECT coalesce(l.order_id, r.order_id), l.order_id IS NULL, r.order_id IS NULL,
               l.status, l.reason, l.changed_ms, r.status, r.reason, r.changed_ms
        FROM {LIVE} l FULL OUTER JOIN {table} r ON l.order_id = r.order_id
        WHERE (l.status, l.reason, l.changed_ms) IS DISTINCT FROM
              (r.status, r.reason, r.changed_ms)
        ORDER BY 1""")
    rows: list[Difference] = cur.fetchall()
    return rows


def replace_live(cur: Cursor, table: str = REBUILD) -> None:
    """The live table holds `table`'s rows: inside one transaction a reader sees the old rows or
    the new ones, and the table keeps its indexes and their names. Refused unless this session
    still holds the writers' lock it took before the rebuild (exclude_writers)."""
    cur.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND "
        "classid = %s AND objid = %s AND objsubid = 2 AND mode = 'ExclusiveLock' AND granted",
        WRITERS,
    )
    if cur.fetchone()[0] != 1:
        raise RuntimeError(
            "this session no longer excludes the status writers (its connection was lost)"
        )
    cur.execute(f"LOCK TABLE {LIVE} IN EXCLUSIVE MODE")  # readers do not wait
    cur.execute(f"DELETE FROM {LIVE}")
    cur.execute(f"INSERT INTO {LIVE} SELECT * FROM {table}")
