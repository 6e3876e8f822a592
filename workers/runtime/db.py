"""PostgreSQL access for workers: connect with backoff, one transaction per batch."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import psycopg2
import psycopg2.extras

log = logging.getLogger(__name__)

execute_values = psycopg2.extras.execute_values
Json = psycopg2.extras.Json
# connection lost, server restarting, or a deadlock/serialization failure: retry the whole batch
TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError, psycopg2.extensions.TransactionRollbackError)


# how long one batch retries its database (a restart, a failover) before the error ends the worker;
# the loop's watchdog does not count this wait as a stall, and the consumer's
# max.poll.interval.ms covers it (workers/runtime/loop.py)
RETRY_S = 120.0


class Database:
    """One connection, reopened after a failure; `transaction()` commits or rolls back."""

    def __init__(self, dsn: str, on_retry=lambda: None, give_up_s: float = RETRY_S):
        self.dsn, self.on_retry, self.give_up_s = dsn, on_retry, give_up_s
        self.conn: psycopg2.extensions.connection | None = None

    def _connect(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = False
        return conn

    @contextmanager
    def transaction(self):
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

    def run(self, work, stop=lambda: False):
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
                log.warning("database error (%s); retrying the batch in %.1fs", str(e).strip(), delay)
                self.on_retry()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self):
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None
