"""The coordinator database's SQL: the transactions it has folded and how far each partition's
rows go. Every function takes a cursor inside the caller's transaction."""

from __future__ import annotations

import io
import json
from typing import Iterable

from infra.postgres.databases import DATABASE as DATABASE_OF
from workers.coordinator.fold import Tx, from_dict, to_dict
from workers.runtime.db import Cursor, Json, execute_values

DATABASE = DATABASE_OF["coordinator"]


def load_open(cur: Cursor, parts: list[int]) -> dict[int, tuple[int, list[tuple[Tx, int]]]]:
    """partition -> (next offset the rows include, its open transactions with the offset of
    each one's last event), for the partitions that have a snapshot."""
    cur.execute("SELECT part, next_offset FROM snapshots WHERE part = ANY(%s)", (parts,))
    out: dict[int, tuple[int, list[tuple[Tx, int]]]] = {p: (o, []) for p, o in cur.fetchall()}
    cur.execute(
        "SELECT part, tx, at_offset FROM txs WHERE part = ANY(%s) AND NOT finished", (list(out),)
    )
    for part, tx, at in cur.fetchall():
        out[part][1].append((from_dict(tx), at))
    return out


def lookup(cur: Cursor, order_ids: list[str]) -> dict[tuple[int, str], tuple[Tx, int]]:
    """(partition, order id) -> what is saved of these orders, with the offset of each one's
    last event. An order's events all sit on one partition, and a row counts only for the
    partition it was folded from."""
    cur.execute(
        "SELECT part, order_id, tx, at_offset FROM txs WHERE order_id = ANY(%s)", (order_ids,)
    )
    return {(part, oid): (from_dict(tx), at) for part, oid, tx, at in cur.fetchall()}


def save(
    cur: Cursor, rows: list[tuple[str, int, int, bool, Tx]], positions: dict[int, int]
) -> None:
    """rows: (order id, partition, offset of its last event, finished, tx). Neither a row nor a
    position ever moves back: a write from an instance that has since lost the partition, or a
    slower one, cannot undo what a newer owner saved. A row folded from one partition is never
    overwritten from another: offsets of two partitions do not compare."""
    if rows:
        execute_values(
            cur,
            "INSERT INTO txs (order_id, part, at_offset, finished, tx) VALUES %s ON CONFLICT "
            "(order_id) DO UPDATE SET at_offset = EXCLUDED.at_offset, finished = "
            "EXCLUDED.finished, tx = EXCLUDED.tx WHERE txs.part = EXCLUDED.part AND txs.at_offset "
            "< EXCLUDED.at_offset",
            [
                (oid, part, at, done, Json(to_dict(tx)))
                for oid, part, at, done, tx in sorted(rows, key=lambda r: r[0])
            ],
        )
    if positions:
        execute_values(
            cur,
            "INSERT INTO snapshots (part, next_offset) VALUES %s ON CONFLICT (part) DO UPDATE SET "
            "next_offset = EXCLUDED.next_offset WHERE snapshots.next_offset < EXCLUDED.next_offset",
            sorted(positions.items()),
        )


def count_txs(cur: Cursor) -> int:
    """How many orders' transactions the store keeps, open or finished."""
    cur.execute("SELECT count(*) FROM txs")
    return int(cur.fetchone()[0])


def bulk_load(cur: Cursor, rows: Iterable[tuple[str, int, int, bool, Tx]]) -> None:
    """Rows as `save` takes them, into an empty store with COPY: a benchmark's history of a
    million orders loads in seconds."""
    buf = io.StringIO()
    for oid, part, at, done, tx in rows:
        # COPY's text format reads a backslash as an escape
        doc = json.dumps(to_dict(tx)).replace("\\", "\\\\")
        buf.write(f"{oid}\t{part}\t{at}\t{'t' if done else 'f'}\t{doc}\n")
    buf.seek(0)
    cur.copy_from(buf, "txs", columns=("order_id", "part", "at_offset", "finished", "tx"))


def analyze(cur: Cursor) -> None:
    """Fresh planner statistics after a bulk load, as a long-running store would have."""
    cur.execute("ANALYZE txs")
