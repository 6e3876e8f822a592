"""Two database sessions, as two worker instances hold them, for tests of what one waits for."""

from __future__ import annotations

import threading
from contextlib import closing

import psycopg2


def read_after_commit(dsn: str, write, read):
    """`write(cursor)` in a first session, left uncommitted; then `read(cursor)` in a second: the
    read must wait while the first is open and answer once it commits. What the read answered."""
    with (
        closing(psycopg2.connect(dsn)) as first,
        closing(
            # a statement that waits longer than this is a lock never released: a failure, not a
            # hang
            psycopg2.connect(dsn, options="-c statement_timeout=30000")
        ) as second,
    ):
        with first.cursor() as cur:
            write(cur)
        answers: list = []

        def read_second():
            with second.cursor() as cur:
                answers.append(read(cur))
            second.rollback()

        other = threading.Thread(target=read_second, daemon=True)
        other.start()
        other.join(2.0)
        assert other.is_alive(), (
            f"the second session read {answers} while the first had not committed"
        )
        first.commit()
        other.join(30)
        assert not other.is_alive(), "the second session still waits after the first committed"
        return answers[0]
