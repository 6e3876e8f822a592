"""The coordinator's transactions per partition: finished orders stay final once saved, and a new
owner resumes from the saved state plus the log after it."""

from __future__ import annotations

import random

import pytest

from schemas.events import Acked, DeadlinePassed, Decided, TxBegun, Voted
from workers.coordinator.fold import from_dict, is_finished, to_dict
from workers.coordinator.open_orders import Partition

P = ("inventory", "payment")


def life(oid: str, outcome: str = "commit"):
    """The tx.log events of one order, in the order the pipeline writes them."""
    yes = outcome == "commit"
    reason = None if yes else "out_of_stock"
    return [
        TxBegun(oid, P, 10_000),
        Voted(oid, "inventory", "yes" if yes else "no", reason),
        Voted(oid, "payment", "yes", None),
        Decided(oid, outcome, None if yes else "inventory:out_of_stock"),
        Acked(oid, "inventory", outcome),
        Acked(oid, "payment", outcome),
    ]


def interleave(orders: dict[str, list], seed: int) -> list:
    rng, queues, log = random.Random(seed), {o: list(e) for o, e in orders.items()}, []
    while queues:
        oid = rng.choice(sorted(queues))
        log.append(queues[oid].pop(0))
        if not queues[oid]:
            del queues[oid]
    return log


class Store:
    """The coordinator database's rows, as `workers/coordinator/store.py` keeps them."""

    def __init__(self):
        self.rows, self.position = {}, 0

    def save(self, part: Partition) -> None:
        for oid, _, at, done, tx in part.unsaved(0):
            if oid not in self.rows or self.rows[oid][0] < at:
                self.rows[oid] = (at, done, to_dict(tx))
        self.position = max(self.position, part.next_offset)
        part.saved()

    def fold(self, part: Partition, offset: int, event) -> list:
        """What the shell does per event: look up an unknown order that the event may open."""
        for oid in part.unknown([event.order_id]):
            if oid in self.rows and event.TYPE in ("TxBegun", "Voted"):
                part.learn(from_dict(self.rows[oid][2]), 0)
        part.next_offset = offset + 1
        return part.apply(offset, event, 0)

    def take_over(self) -> Partition:
        part = Partition(self.position)
        for _, done, tx in self.rows.values():
            if not done:
                part.learn(from_dict(tx), 0)
        return part


def test_a_finished_order_is_final_after_it_is_saved_and_forgotten():
    store, part = Store(), Partition()
    for offset, e in enumerate(life("a", "abort")):
        store.fold(part, offset, e)
    assert part.open == {} and set(part.finished) == {"a"}
    store.save(part)
    assert part.finished == {} and part.unknown(["a"]) == {"a"}
    # replayed: a second begin, and yes votes from both (as if the holds had been kept)
    again = [
        TxBegun("a", P, 99_000),
        Voted("a", "inventory", "yes", None),
        Voted("a", "payment", "yes", None),
    ]
    assert [store.fold(part, 10 + i, e) for i, e in enumerate(again)] == [[], [], []]
    assert part.open == {}


def test_a_vote_before_its_begin_opens_the_order():
    part = Partition()
    part.apply(0, Voted("o", "payment", "yes", None), 0)
    tx, timers = part.open["o"]
    assert not tx.begun and timers.first_seen_ms == 0
    assert part.apply(1, Acked("x", "payment", "abort"), 0) == [] and "x" not in part.open


def test_decision_outputs_come_once():
    part = Partition()
    outs = [part.apply(i, e, 5) for i, e in enumerate(life("b", "abort"))]
    assert sum(1 for o in outs if o) == 1
    assert any(dest == "status" and e.status == "REJECTED" for dest, e in outs[1])


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("cut_at", [0.25, 0.5, 0.8])
def test_taking_over_from_the_saved_state_rebuilds_the_same_transactions(seed, cut_at):
    rng = random.Random(seed)
    orders = {}
    for i in range(12):
        events = life(f"o{i}", rng.choice(["commit", "abort"]))
        orders[f"o{i}"] = events[: rng.randint(1, len(events))]  # some still open
    log = interleave(orders, seed)
    log += [e for e in log if e.TYPE == "TxBegun"]  # an intake replay
    store, live = Store(), Partition()
    cut = int(len(log) * cut_at)
    for offset, e in enumerate(log[:cut]):
        store.fold(live, offset, e)
        if rng.random() < 0.2:
            store.save(live)
    rebuilt = store.take_over()
    for offset in range(rebuilt.next_offset, cut):
        store.fold(rebuilt, offset, log[offset])
    assert {o: tx for o, (tx, _) in rebuilt.open.items()} == {
        o: tx for o, (tx, _) in live.open.items()
    }
    assert all(is_finished(tx) for tx in rebuilt.finished.values())


def test_a_late_yes_vote_on_a_finished_abort_is_told_to_abort():
    # payment's vote arrives first (its TxBegun late): presumed aborted, payment acks, done;
    # then inventory's yes vote: it holds something, and only an Abort releases it
    part = Partition()
    part.apply(0, Voted("o", "payment", "yes", None), 0)
    decided = part.apply(1, DeadlinePassed("o", 0), 0)
    assert [(to, e.TYPE) for to, e in decided][1:3] == [
        ("payment", "Abort"),
        ("status", "StatusChanged"),
    ]
    part.apply(2, Acked("o", "payment", "abort"), 0)
    assert set(part.finished) == {"o"}
    told = part.apply(3, Voted("o", "inventory", "yes", None), 0)
    assert [(to, e.TYPE) for to, e in told] == [("inventory", "Abort")]
    assert "o" in part.open
    assert part.apply(4, Acked("o", "inventory", "abort"), 0) == [] and set(part.finished) == {"o"}


def test_a_begin_after_an_orphan_was_aborted_tells_the_named_participants():
    part = Partition()
    part.apply(0, Voted("o", "payment", "yes", None), 0)
    part.apply(1, DeadlinePassed("o", 0), 0)
    told = part.apply(2, TxBegun("o", P, 10_000), 0)
    assert [(to, e.TYPE) for to, e in told] == [("inventory", "Abort")]


def test_an_order_taken_over_is_gone_past_by_a_participant_voting_on_later_orders():
    """An order loaded from the store whose inventory vote was lost: inventory keeps voting on
    orders begun after it on this partition, so it has gone past this one, and at the deadline
    the order is aborted rather than held for as long as inventory stays busy."""
    from workers.coordinator.fold import due

    lost = Partition()
    lost.apply(40, TxBegun("early", P, 10_000), 0)
    lost.apply(41, Voted("early", "payment", "yes", None), 0)
    saved = {oid: (at, tx) for oid, _, at, _, tx in lost.unsaved(3)}

    part = Partition(42)  # a new owner
    at, tx = saved["early"]
    part.learn(tx, 5_000, at)
    part.apply(50, TxBegun("later", P, 60_000), 5_100)
    part.apply(51, Voted("later", "inventory", "yes", None), 19_500)  # busy, alive
    tx, timers = part.open["early"]
    _, outputs = due(
        tx,
        timers,
        20_000,
        resend_after_ms=3000,
        orphan_after_ms=10_000,
        progress=part.progress,
        stall_ms=10_000,
    )
    assert [e.TYPE for _, e in outputs] == ["DeadlinePassed"]
