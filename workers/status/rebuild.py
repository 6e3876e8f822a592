"""Rebuild the order-status read model from orders.status into its rebuild table, compare it with
the live one, and swap the rebuilt rows in. Rows only: the service's role may change no table
(the rebuild table comes from the orders migrations).

The rebuild folds the whole topic with the worker's own `write`, so it derives exactly what the
worker derives: a status only moves forward and the first event of the furthest rank wins, which
does not depend on how the events were batched. Swapping is safe while the status worker is
stopped (the command refuses otherwise): on restart it resumes from its committed offset, and
re-applying events the rebuilt table already holds changes nothing (the upsert is monotonic). A
worker started while the command runs waits for the swap (writers_excluded).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from schemas.errors import DeadLetter
from schemas.events import StatusChanged
from topics.catalogue import ORDERS_STATUS
from topics.read import read
from workers.runtime.db import Cursor, Database
from workers.runtime.signing import Verifier
from workers.status import store
from workers.status.store import REBUILD
from workers.status.worker import write

EXAMPLES = 20
# a row's status, reason and changed ms
Columns = tuple[str | int | None, ...]


@dataclass
class Comparison:
    live: int = 0
    rebuilt: int = 0
    only_live: int = 0
    only_rebuilt: int = 0
    different: int = 0
    # (order id, live row, rebuilt row)
    examples: list[tuple[str, Columns | None, Columns | None]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.only_live or self.only_rebuilt or self.different)


def rebuild(
    kafka_config: dict[str, Any], dsn: str, topic: str, verifier: Verifier, table: str = REBUILD
) -> dict[str, float]:
    """Fold every committed record of `topic` that the status worker would take (its author's,
    on its order's partition) into `table`, emptied first; returns counts and timing."""
    t0 = time.monotonic()
    events: list[StatusChanged] = []
    skipped = 0
    for msg in read(kafka_config, topic, timeout_s=600):
        try:
            event = verifier.decode(msg, accepts=ORDERS_STATUS.events)
        except DeadLetter:
            skipped += 1  # dead-lettered by the status worker when it first read it
            continue
        assert isinstance(event, StatusChanged)  # the only event of ORDERS_STATUS
        events.append(event)
    read_s = time.monotonic() - t0

    def fresh(cur: Cursor) -> None:
        store.clear(cur, table)
        write(cur, events, table)
        store.add_pending(cur, table=table)  # the orders begun and not decided yet

    Database.once(dsn, fresh)
    return {
        "events": len(events),
        "skipped": skipped,
        "read_s": round(read_s, 2),
        "seconds": round(time.monotonic() - t0, 2),
    }


def compare(dsn: str, table: str = REBUILD) -> Comparison:
    def work(cur: Cursor) -> Comparison:
        c = Comparison()
        c.live, c.rebuilt = store.row_counts(cur, table)
        for oid, no_live, no_rebuilt, *cols in store.differences(cur, table):
            if no_live:
                c.only_rebuilt += 1
            elif no_rebuilt:
                c.only_live += 1
            else:
                c.different += 1
            if len(c.examples) < EXAMPLES:
                c.examples.append(
                    (
                        oid,
                        None if no_live else tuple(cols[:3]),
                        None if no_rebuilt else tuple(cols[3:]),
                    )
                )
        return c

    return Database.once(dsn, work)


@contextmanager
def writers_excluded(dsn: str) -> Iterator[Database]:
    """A session that keeps every writer of the live table waiting until it is closed: take it
    before the rebuild reads the topic, and swap through it."""
    with Database(dsn) as db:  # closed: the session ends, and its lock
        # retried, like a worker's batch, past a writer stopped mid-batch
        db.run(store.exclude_writers)
        yield db


def swap(db: Database, table: str = REBUILD) -> None:
    """Make the live table hold the rebuilt rows, in one transaction of the session that
    excludes its writers (writers_excluded)."""
    with db.transaction() as cur:
        store.replace_live(cur, table)
