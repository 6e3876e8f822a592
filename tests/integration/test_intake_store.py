"""Intake's store on the real database. Two intake instances given the same order id at once
(copies on two partitions, with two contents) must see it one after the other: the second only
once the first has recorded it, so that its copy is a conflict, not a second new order."""

from __future__ import annotations

import psycopg2
import pytest
from sessions import read_after_commit

from workers.intake import store
from workers.intake.core import Seen, classify

pytestmark = pytest.mark.integration


@pytest.fixture
def orders_dsn(own_database):
    """A database of intake's own, made for this test alone."""
    return own_database(store.DATABASE)


def row(order_id: str, content_hash: str, partition: int, offset: int) -> tuple:
    body = {
        "order_id": order_id,
        "customer_id": "c",
        "currency": "EUR",
        "total_cents": 100,
        "items": [],
    }
    return (order_id, "c", "EUR", 100, content_hash, body, partition, offset)


def test_an_order_id_being_recorded_is_read_only_once_its_recording_commits(orders_dsn):
    def first(cur):  # the first instance has read and recorded X, not committed yet
        assert store.seen(cur, ["X"]) == {}
        store.record(cur, [row("X", "content-1", 0, 10)])

    answer = read_after_commit(orders_dsn, first, lambda cur: store.seen(cur, ["X"]))
    assert answer == {"X": Seen("content-1", 0, 10)}
    # so its copy, with other content from another partition, is the dead letter it must be
    assert classify(answer["X"], "content-2", 3, 7) == "conflict"


def test_a_recorded_order_shows_pending_until_a_status_moves_it_on(orders_dsn):
    """Intake writes an order's PENDING row with the order; it never moves a row back, and a
    rebuild derives the same row from the recorded order."""
    from workers.status import store as status

    conn = psycopg2.connect(orders_dsn)
    try:
        with conn.cursor() as cur:
            store.record(cur, [row("P", "c", 0, 1), row("Q", "c", 0, 2)])
            status.add_pending(cur, ["P", "Q"])
            status.upsert(cur, [("Q", "CONFIRMED", None, 5)])
            status.add_pending(cur, ["P", "Q"])  # again, as a redelivered batch would
            assert {k: v[0] for k, v in status.statuses(cur).items()} == {
                "P": "PENDING",
                "Q": "CONFIRMED",
            }
            status.clear(cur, status.REBUILD)
            status.upsert(cur, [("Q", "CONFIRMED", None, 5)], status.REBUILD)
            status.add_pending(cur, table=status.REBUILD)
            assert status.differences(cur) == []
        conn.commit()
    finally:
        conn.close()
