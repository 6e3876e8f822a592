"""The participant databases' SQL, in one module: each participant's ledger (inventory's stock,
payment's accounts) and the holds both keep. The worker, verify, the audit, report, top, seeding,
the sandbox and the demo all go through it, so a column added to a ledger is a migration plus
its `Ledger` here. Every function takes an open cursor; the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from infra.postgres.databases import DATABASE
from workers.participant.core import Hold
from workers.runtime.db import LOCK_EACH_ID, Cursor, Json, execute_values, values


@dataclass(frozen=True)
class Ledger:
    """Where a participant keeps its balances: database, table, key column, amount columns."""

    database: str
    table: str
    key: str
    initial: str
    available: str
    held: str
    final: str

    @property
    def amounts(self) -> tuple[str, str, str, str]:
        return (self.initial, self.available, self.held, self.final)


STOCK = Ledger(DATABASE["inventory"], "stock", "sku", "initial", "available", "held", "committed")
ACCOUNTS = Ledger(
    DATABASE["payment"],
    "accounts",
    "customer_id",
    "initial_cents",
    "balance_cents",
    "held_cents",
    "captured_cents",
)
LEDGERS = {"inventory": STOCK, "payment": ACCOUNTS}  # participant -> its ledger


# -- the worker's batch, in one transaction


# A batch's transaction is five round trips to the server: BEGIN, locked_holds,
# available_for_update, write, COMMIT (the statements of one step sent as one string).


def locked_holds(cur: Cursor, order_ids: list[str]) -> dict[str, Hold]:
    """The recorded hold of each of these orders, locked, after a lock per order: a hold not yet
    written has no row to lock, so two instances given the same Prepare (a zombie's batch and
    its successor's, around a rebalance) would otherwise both find it new and hold its amounts
    twice. The order locks are taken in key order, before any row lock, so two batches never
    deadlock on a pair of orders."""
    cur.execute(
        LOCK_EACH_ID
        + "SELECT order_id, vote, state, reason, amounts FROM holds WHERE order_id = ANY(%(ids)s) "
        "FOR UPDATE",
        {"ids": order_ids},
    )
    return {r[0]: Hold(r[0], r[1], r[2], r[3], r[4]) for r in cur.fetchall()}


def available_for_update(cur: Cursor, ledger: Ledger, keys: Iterable[str]) -> dict[str, int]:
    """Locked in key order, so two instances never deadlock on a pair of hot rows."""
    cur.execute(
        f"SELECT {ledger.key}, {ledger.available} FROM {ledger.table} "
        f"WHERE {ledger.key} = ANY(%s) ORDER BY {ledger.key} FOR UPDATE",
        (sorted(keys),),
    )
    return dict(cur.fetchall())


def write(
    cur: Cursor, ledger: Ledger, holds: Iterable[Hold], changed: list[tuple[str, int, int, int]]
) -> int:
    """The batch's holds, new or changed, and its ledger changes, (key, +available, +held,
    +final) per row; returns the yes votes now waiting for a decision (count_held). One UPDATE
    per batch however many orders touched a row: a flash sale's hot SKU is written once per
    batch, not once per order."""
    L = ledger
    sql: list[bytes] = []
    rows = [(h.order_id, h.vote, h.state, h.reason, Json(dict(h.amounts))) for h in holds]
    if rows:
        sql.append(
            b"INSERT INTO holds (order_id, vote, state, reason, amounts) VALUES "
            + values(cur, "(%s, %s, %s, %s, %s)", rows)
            + b" ON CONFLICT (order_id) DO UPDATE SET vote = EXCLUDED.vote, state = "
            b"EXCLUDED.state, "
            b"reason = EXCLUDED.reason, amounts = EXCLUDED.amounts, changed_at = now()"
        )
    if changed:
        sql.append(
            f"UPDATE {L.table} AS t SET {L.available} = t.{L.available} + d.a, "
            f"{L.held} = t.{L.held} + d.h, {L.final} = t.{L.final} + d.f FROM (VALUES ".encode()
            + values(cur, "(%s, %s::bigint, %s::bigint, %s::bigint)", changed)
            + f") AS d(k, a, h, f) WHERE t.{L.key} = d.k".encode()
        )
    sql.append(COUNT_HELD.encode())
    cur.execute(b";".join(sql))
    return int(cur.fetchone()[0])


# -- what the operators' tools read


COUNT_HELD = "SELECT count(*) FROM holds WHERE state = 'held'"


def count_held(cur: Cursor) -> int:
    """Yes votes waiting for a decision: the in-doubt transactions an operator watches."""
    cur.execute(COUNT_HELD)
    return int(cur.fetchone()[0])


def held_orders(cur: Cursor, among: list[str] | None = None) -> list[str]:
    if among is None:
        cur.execute("SELECT order_id FROM holds WHERE state = 'held'")
    else:
        cur.execute(
            "SELECT order_id FROM holds WHERE state = 'held' AND order_id = ANY(%s)", (among,)
        )
    return [r[0] for r in cur.fetchall()]


def held_since(cur: Cursor) -> list[tuple[str, datetime]]:
    """(order id, when its hold was written) of every yes vote waiting for a decision, oldest
    first: the console's in-doubt pane."""
    cur.execute(
        "SELECT order_id, changed_at FROM holds WHERE state = 'held' ORDER BY changed_at, order_id"
    )
    rows: list[tuple[str, datetime]] = cur.fetchall()
    return rows


def holds(cur: Cursor) -> dict[str, tuple[str, dict[str, int]]]:
    """order id -> (state, amounts) of every hold."""
    cur.execute("SELECT order_id, state, amounts FROM holds")
    return {r[0]: (r[1], r[2]) for r in cur.fetchall()}


def hold_of(cur: Cursor, order_id: str) -> dict[str, Any] | None:
    cur.execute(
        "SELECT state, vote, reason, amounts, changed_at FROM holds WHERE order_id = %s",
        (order_id,),
    )
    row = cur.fetchone()
    return (
        None
        if row is None
        else dict(zip(("state", "vote", "reason", "amounts", "changed_at"), row))
    )


def balances(cur: Cursor, ledger: Ledger) -> list[tuple[str, int, int, int, int]]:
    """(key, initial, available, held, final) of every row, by key."""
    cur.execute(
        f"SELECT {ledger.key}, {', '.join(ledger.amounts)} FROM {ledger.table} ORDER BY "
        f"{ledger.key}"
    )
    rows: list[tuple[str, int, int, int, int]] = cur.fetchall()
    return rows


def keys(cur: Cursor, ledger: Ledger) -> list[str]:
    cur.execute(f"SELECT {ledger.key} FROM {ledger.table} ORDER BY {ledger.key}")
    return [r[0] for r in cur.fetchall()]


# -- seeding


def fill(cur: Cursor, ledger: Ledger, amounts: dict[str, int], replace: bool = False) -> None:
    """Rows holding `amounts` (initial = available, nothing held or taken); with `replace`,
    every hold and row there was goes first."""
    if replace:
        cur.execute("DELETE FROM holds")
        cur.execute(f"DELETE FROM {ledger.table}")
    if amounts:
        execute_values(
            cur,
            f"INSERT INTO {ledger.table} ({ledger.key}, {', '.join(ledger.amounts)}) VALUES %s",
            [(k, n, n, 0, 0) for k, n in amounts.items()],
            page_size=1000,
        )
