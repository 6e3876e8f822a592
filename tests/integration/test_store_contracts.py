"""What each store promises, tested on the real PostgreSQL, each in a database of its own made for
the test: the coordinator's rows and positions never move back and a row is never overwritten from
another partition; a participant's batch writes its holds and adds its ledger changes, and a second
batch on the same order waits for the first; shipping books an order once; the status read model
only moves forward and a PENDING row never covers a decision. Intake's first copy wins is
test_intake_store.py. The workers are tested through the pipeline elsewhere; these pin the SQL the
invariants rest on, so a change to it fails here first."""

from __future__ import annotations

from contextlib import closing

import psycopg2
import pytest
from sessions import read_after_commit

from workers.coordinator import store as coordinator
from workers.coordinator.fold import Tx
from workers.intake import store as intake
from workers.participant import store as participant
from workers.participant.core import Hold
from workers.shipping import store as shipping
from workers.status import store as status

pytestmark = pytest.mark.integration


def run(dsn: str, work):
    """`work(cursor)` in one transaction of its own; its result."""
    with closing(psycopg2.connect(dsn)) as conn:
        with conn, conn.cursor() as cur:
            return work(cur)


def tx(oid: str, outcome: str | None = None) -> Tx:
    return Tx(
        oid, begun=True, participants=("inventory", "payment"), deadline_ms=10_000, outcome=outcome
    )


# -- the coordinator


def test_coordinator_load_open_gives_each_partitions_open_rows_and_where_they_end(own_database):
    dsn = own_database(coordinator.DATABASE)
    run(
        dsn,
        lambda cur: coordinator.save(
            cur,
            [
                ("a", 0, 3, False, tx("a")),
                ("b", 0, 5, True, tx("b", "commit")),
                ("c", 1, 4, False, tx("c")),
            ],
            {0: 6, 1: 5},
        ),
    )
    loaded = run(dsn, lambda cur: coordinator.load_open(cur, [0, 1, 2]))
    assert set(loaded) == {0, 1}  # partition 2 has no snapshot: nothing saved of it
    assert loaded[0] == (6, [(tx("a"), 3)])  # b finished: not open
    assert loaded[1] == (5, [(tx("c"), 4)])
    assert run(dsn, coordinator.count_txs) == 3


def test_coordinator_rows_and_positions_never_move_back(own_database):
    dsn = own_database(coordinator.DATABASE)
    run(dsn, lambda cur: coordinator.save(cur, [("a", 0, 10, True, tx("a", "commit"))], {0: 11}))
    # a slower instance that has lost the partition saves what it folded earlier
    run(dsn, lambda cur: coordinator.save(cur, [("a", 0, 7, False, tx("a"))], {0: 8}))
    assert run(dsn, lambda cur: coordinator.lookup(cur, ["a"])) == {
        (0, "a"): (tx("a", "commit"), 10)
    }
    assert run(dsn, lambda cur: coordinator.load_open(cur, [0])) == {0: (11, [])}
    run(dsn, lambda cur: coordinator.save(cur, [("a", 0, 12, True, tx("a", "abort"))], {0: 13}))
    assert run(dsn, lambda cur: coordinator.lookup(cur, ["a"])) == {
        (0, "a"): (tx("a", "abort"), 12)
    }


def test_a_coordinator_row_is_never_overwritten_from_another_partition(own_database):
    dsn = own_database(coordinator.DATABASE)
    run(dsn, lambda cur: coordinator.save(cur, [("a", 0, 10, True, tx("a", "abort"))], {}))
    # offsets of two partitions do not compare: a higher one elsewhere is no later event
    run(dsn, lambda cur: coordinator.save(cur, [("a", 1, 50, True, tx("a", "commit"))], {}))
    assert run(dsn, lambda cur: coordinator.lookup(cur, ["a"])) == {
        (0, "a"): (tx("a", "abort"), 10)
    }


# -- a participant


def hold(oid: str, sku: str, qty: int, state: str = "held") -> Hold:
    return Hold(oid, "yes", state, None, {sku: qty})


def test_a_participant_batch_writes_its_holds_and_adds_its_ledger_changes(own_database):
    ledger = participant.STOCK
    dsn = own_database(ledger.database)
    run(dsn, lambda cur: participant.fill(cur, ledger, {"s1": 10, "s2": 5}))

    def batch(cur):
        assert participant.locked_holds(cur, ["o1", "o2"]) == {}
        assert participant.available_for_update(cur, ledger, {"s2", "s1"}) == {"s1": 10, "s2": 5}
        # a hot row written once for the batch, however many orders touched it
        return participant.write(
            cur, ledger, [hold("o1", "s1", 3), hold("o2", "s1", 2)], [("s1", -5, 5, 0)]
        )

    assert run(dsn, batch) == 2  # yes votes now waiting for a decision
    assert run(dsn, lambda cur: participant.locked_holds(cur, ["o1"])) == {
        "o1": hold("o1", "s1", 3)
    }

    def commit_o1(cur):
        return participant.write(
            cur, ledger, [hold("o1", "s1", 3, "committed")], [("s1", 0, -3, 3)]
        )

    assert run(dsn, commit_o1) == 1
    assert run(dsn, lambda cur: participant.balances(cur, ledger)) == [
        ("s1", 10, 5, 2, 3),
        ("s2", 5, 5, 0, 0),
    ]
    assert run(dsn, participant.held_orders) == ["o2"]


def test_a_second_batch_on_an_order_waits_for_the_first_to_commit(own_database):
    ledger = participant.STOCK
    dsn = own_database(ledger.database)

    def zombie(cur):  # a zombie's batch: the order is new to it, its hold not yet committed
        assert participant.locked_holds(cur, ["o1"]) == {}
        participant.write(cur, ledger, [hold("o1", "s1", 3)], [])

    seen = read_after_commit(dsn, zombie, lambda cur: participant.locked_holds(cur, ["o1"]))
    assert seen == {
        "o1": hold("o1", "s1", 3)
    }  # so the successor votes what was recorded, not again


# -- shipping


def test_shipping_books_an_order_once_however_often_asked(own_database):
    dsn = own_database(shipping.DATABASE)
    run(dsn, lambda cur: shipping.book(cur, ["o1", "o2"]))
    first = run(dsn, lambda cur: shipping.booked_at(cur, "o1"))
    run(dsn, lambda cur: shipping.book(cur, ["o1", "o3"]))
    assert run(dsn, shipping.shipped) == {"o1", "o2", "o3"}
    assert run(dsn, lambda cur: shipping.booked_at(cur, "o1")) == first
    assert run(dsn, lambda cur: shipping.booked_at(cur, "o4")) is None


# -- the status read model


def test_a_status_only_moves_forward(own_database):
    dsn = own_database(status.DATABASE)
    run(
        dsn,
        lambda cur: status.upsert(cur, [("o1", "CONFIRMED", None, 2), ("o2", "SHIPPED", None, 3)]),
    )
    # late or redelivered events: a PENDING after a decision, a CONFIRMED after SHIPPED
    run(
        dsn,
        lambda cur: status.upsert(cur, [("o1", "PENDING", None, 9), ("o2", "CONFIRMED", None, 9)]),
    )
    assert run(dsn, lambda cur: status.status_of(cur, "o1")) == ("CONFIRMED", None, 2)
    assert run(dsn, lambda cur: status.status_of(cur, "o2")) == ("SHIPPED", None, 3)
    run(dsn, lambda cur: status.upsert(cur, [("o1", "SHIPPED", None, 4)]))
    assert run(dsn, lambda cur: status.final_among(cur, ["o1", "o2", "o3"])) == {"o1", "o2"}


def test_a_pending_row_is_added_for_a_recorded_order_and_never_covers_a_decision(own_database):
    dsn = own_database(status.DATABASE)  # intake's database: the orders it recorded are here

    def recorded(cur):
        for oid, offset in (("o1", 0), ("o2", 1)):
            body = {
                "order_id": oid,
                "customer_id": "c",
                "currency": "EUR",
                "total_cents": 1,
                "items": [],
            }
            intake.record(cur, [(oid, "c", "EUR", 1, f"hash-{oid}", body, 0, offset)])
        status.upsert(cur, [("o2", "REJECTED", "inventory:out_of_stock", 5)])

    run(dsn, recorded)
    run(dsn, lambda cur: status.add_pending(cur))
    assert run(dsn, lambda cur: status.statuses(cur)) == {
        "o1": ("PENDING", None),
        "o2": ("REJECTED", "inventory:out_of_stock"),
    }
