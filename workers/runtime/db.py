"""PostgreSQL access for workers: connect with backoff, one transaction per batch."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extras

log = logging.getLogger(__name__)
T = TypeVar("T")

# an open psycopg2 cursor (psycopg2 ships no type information)
Cursor = Any

execute_values = psycopg2.extras.execute_values
Json = psycopg2.extras.Json

# A transaction-scoped advisory lock per id of %(ids)s, taken in key order (so two batches never
# deadlock on a pair of ids): for rows that may not exist yet, which no row lock can cover. Ends
# with `;`, to lead the statement that reads what it guards in the same round trip.
LOCK_EACH_ID = (
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(id, 0) AS k FROM "
    "unnest(%(ids)s::text[]) AS id) AS ks ORDER BY k;"
)


def values(cur: Cursor, template: str, rows: Iterable[tuple[Any, ...]]) -> bytes:
    """`rows` as a VALUES list, each row through `template`, for a statement sent with others."""
    return b",".join(cur.mogrify(template, row) for row in rows)


# connection lost, server restarting, a deadlock/serialization failure, a lock wait past
# lock_timeout or a cancelled statement (both OperationalError), or this session ended by the
# server for idling inside its transaction (reported as an InternalError): the transaction was
# rolled back, so retry the whole batch
TRANSIENT = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    psycopg2.extensions.TransactionRollbackError,
    psycopg2.errors.IdleInTransactionSessionTimeout,
)

# Set on every worker session, whatever server the DSN names: a worker stopped inside its batch's
# transaction (SIGSTOP, a hung host) would otherwise keep its row and advisory locks for as long
# as it is stopped, and the instance that took its partitions over would wait on them, silently.
SESSION = {
    # a live worker is never idle inside its transaction for more than a fraction of a second
    # (pure Python between two statements of one batch); 10 s frees a stopped one's locks well
    # within the watchdog's 30 s stall limit (workers/runtime/clients.py), and the stopped
    # worker's commit then fails and its batch is tried again
    "idle_in_transaction_session_timeout": "10s",
    # a healthy batch holds its locks ~0.1 s, a slow one about a second: a longer wait (on a
    # stopped worker, or on any other session holding a lock) becomes an error that is retried,
    # logged and counted (orderbus_db_retries_total), and that the watchdog does not take for a
    # stall
    "lock_timeout": "5s",
    # the server's TCP keepalives: a worker host gone away is noticed in ~11 s, not the OS's 2 h
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
# libpq's TCP keepalives (the client's side): a server gone away while a worker waits on it
# becomes a connection error, retried, after ~11 s instead of an endless wait
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


# how long one batch retries its database (a restart, a failover) before the error ends the worker;
# the loop's watchdog does not count this wait as a stall, and the consumer's
# max.poll.interval.ms covers it (workers/runtime/loop.py)
RETRY_S = 120.0


class Database:
    """One connection, reopened after a failure; `transaction()` commits or rolls back. A
    context manager: the connection is closed on leaving it."""

    def __init__(
        self, dsn: str, on_retry: Callable[[], None] = lambda: None, give_up_s: float = RETRY_S
    ) -> None:
        self.dsn, self.on_retry, self.give_up_s = dsn, on_retry, give_up_s
        self.conn: psycopg2.extensions.connection | None = None

    @classmethod
    def once(cls, dsn: str, work: Callable[[Cursor], T], give_up_s: float = RETRY_S) -> T:
        """What `work(cursor)` returns, run as `run` runs it on a connection of its own, which
        is closed afterwards: for a tool that asks a database one thing."""
        with cls(dsn, give_up_s=give_up_s) as db:
            return db.run(work)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(self.dsn, **KEEPALIVES)
        try:
            conn.autocommit = True  # the settings last for the session, not one transaction
            with conn.cursor() as cur:
                cur.execute(
                    "".join(f"SET {name} = %s;" for name in SESSION), list(SESSION.values())
                )
            conn.autocommit = False
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        if self.conn is None or self.conn.closed:
            self.conn = self._connect()
        try:
            with self.conn.cursor() as cur:
                yield cur
            self.conn.commit()
        except TRANSIENT:
            self.close()
            raise
        except BaseException:
            if not self.conn.closed:
                self.conn.rollback()
            raise

    def run(self, work: Callable[[Cursor], T], stop: Callable[[], bool] = lambda: False) -> T:
        """Run `work(cursor)` in one transaction, retrying the whole of it after a transient
        fault (a PostgreSQL restart, a dropped connection, a refused connection) with backoff,
        for at most `give_up_s` in all. `on_retry` is called before each wait."""
        delay, deadline = 0.1, time.monotonic() + self.give_up_s
        while True:
            try:
                with self.transaction() as cur:
                    return work(cur)
            except TRANSIENT as e:
                if time.monotonic() > deadline or stop():
                    raise
                log.warning(
                    "database error (%s); retrying the batch in %.1fs", str(e).strip(), delay
                )
                self.on_retry()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None
