"""The status read model keeps the furthest status; the coordinator's changelog round-trips."""

from __future__ import annotations

import itertools

import pytest

from schemas.events import Acked, Decided, DeadlinePassed, StatusChanged, TxBegun, Voted
from workers.coordinator import state
from workers.coordinator.fold import Timers, Tx, replay, step
from workers.status.worker import latest

PENDING = StatusChanged("o-1", "PENDING", None, 10)
CONFIRMED = StatusChanged("o-1", "CONFIRMED", None, 20)
REJECTED = StatusChanged("o-1", "REJECTED", "payment:insufficient_funds", 20)
SHIPPED = StatusChanged("o-1", "SHIPPED", None, 30)


def row(e: StatusChanged) -> tuple:
    return (e.order_id, e.status, e.reason, e.at_ms)


@pytest.mark.parametrize("events, furthest", [
    pytest.param([PENDING], PENDING, id="pending"),
    pytest.param([PENDING, CONFIRMED], CONFIRMED, id="confirmed"),
    pytest.param([PENDING, REJECTED], REJECTED, id="rejected"),
    pytest.param([PENDING, CONFIRMED, SHIPPED], SHIPPED, id="shipped"),
    pytest.param([CONFIRMED, SHIPPED, PENDING], SHIPPED, id="shipped-then-late-pending"),
    pytest.param([PENDING, PENDING], PENDING, id="redelivered-pending"),
])
def test_latest_any_order(events, furthest):
    for order in itertools.permutations(events):
        assert latest(order) == {"o-1": row(furthest)}


def test_latest_per_order():
    o2_pending = StatusChanged("o-2", "PENDING", None, 11)
    o2_rejected = StatusChanged("o-2", "REJECTED", "deadline", 21)
    o3_pending = StatusChanged("o-3", "PENDING", None, 12)
    batch = [SHIPPED, o2_rejected, PENDING, o3_pending, o2_pending, CONFIRMED]
    assert latest(batch) == {"o-1": row(SHIPPED), "o-2": row(o2_rejected),
                             "o-3": row(o3_pending)}
    assert latest([]) == {}


# --- Changelog round trip of the coordinator's Tx and Timers --------------------------------

BEGIN = TxBegun("o-1", ("inventory", "payment"), 5_000)
INV_YES = Voted("o-1", "inventory", "yes", None)
PAY_YES = Voted("o-1", "payment", "yes", None)
PAY_NO = Voted("o-1", "payment", "no", "insufficient_funds")


def _fold(events) -> Tx:
    """Fold with ``step``, feeding back the Decided it emits, as the shell does via tx.log."""
    tx, pending = None, list(events)
    while pending:
        event = pending.pop(0)
        tx, outputs = step(tx, event, now_ms=100)
        pending += [e for dest, e in outputs if dest == "tx.log"]
    assert tx == replay(events + [Decided(tx.order_id, tx.outcome, tx.reason)]
                        if tx.outcome else events)
    return tx


TXS = [
    pytest.param([Voted("o-1", "inventory", "yes", None)], id="vote-before-begin"),
    pytest.param([BEGIN], id="begun"),
    pytest.param([BEGIN, INV_YES], id="in-doubt"),
    pytest.param([BEGIN, INV_YES, PAY_YES, Acked("o-1", "payment", "commit"),
                  Acked("o-1", "inventory", "commit")], id="committed-acked"),
    pytest.param([BEGIN, INV_YES, PAY_NO, Acked("o-1", "inventory", "abort"),
                  Acked("o-1", "payment", "abort")], id="aborted-with-reason"),
    pytest.param([BEGIN, INV_YES, DeadlinePassed("o-1", 5_001),
                  Voted("o-1", "shipping", "no", "late"), Acked("o-1", "inventory", "abort"),
                  Acked("o-1", "inventory", "commit")], id="deadline-stray-vote-conflict"),
    pytest.param([DeadlinePassed("o-1", 1)], id="deadline-before-begin"),
]

TIMERS = [Timers(), Timers(first_seen_ms=1, deadline_appended_ms=5_001, resent_ms=6_000),
          Timers(first_seen_ms=0)]


@pytest.mark.parametrize("timers", TIMERS)
@pytest.mark.parametrize("events", TXS)
def test_state_round_trip(events, timers):
    tx = _fold(events)
    assert state.loads(state.dumps(tx, timers)) == (tx, timers)
    # the record is stable: dumping what was loaded gives the same bytes
    assert state.dumps(*state.loads(state.dumps(tx, timers))) == state.dumps(tx, timers)


def test_round_trip_keeps_what_matters():
    tx = _fold([BEGIN, INV_YES, PAY_NO, Acked("o-1", "payment", "abort")])
    assert tx.recorded == (("abort", "payment:insufficient_funds"),)
    loaded, _ = state.loads(state.dumps(tx, Timers()))
    assert loaded.votes == (("inventory", "yes", None), ("payment", "no", "insufficient_funds"))
    assert loaded.outcome == "abort" and loaded.reason == "payment:insufficient_funds"
    assert loaded.acked == frozenset({"payment"})
    assert loaded.targets == tx.targets and loaded.participants == ("inventory", "payment")
    # the loaded Tx folds on like the original
    more = Acked("o-1", "inventory", "abort")
    assert step(loaded, more, 200) == step(tx, more, 200)
