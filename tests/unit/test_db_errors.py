"""Which database errors retry the batch: every one after which the server has rolled the
transaction back and trying again can succeed, the waits the session settings cut short among
them; never an error that would fail the same way again."""

from __future__ import annotations

import psycopg2.errors
import pytest

from workers.runtime.db import TRANSIENT


@pytest.mark.parametrize(
    "error, transient",
    [
        (psycopg2.errors.LockNotAvailable, True),  # a lock wait past lock_timeout
        (psycopg2.errors.QueryCanceled, True),  # a statement cancelled
        (psycopg2.errors.IdleInTransactionSessionTimeout, True),  # the session ended while stopped
        (psycopg2.errors.AdminShutdown, True),  # the server restarting
        (psycopg2.errors.DeadlockDetected, True),
        (psycopg2.errors.SerializationFailure, True),
        (psycopg2.OperationalError, True),  # the connection lost
        (psycopg2.errors.UniqueViolation, False),
        (psycopg2.errors.UndefinedColumn, False),
        (psycopg2.errors.InsufficientPrivilege, False),
    ],
)
def test_retried_or_not(error, transient):
    assert issubclass(error, TRANSIENT) is transient
