"""The coordinator's open transactions per partition, and re-folding them from the refold point."""
from __future__ import annotations

import random

import pytest

from schemas.events import Acked, Decided, TxBegun, Voted
from workers.coordinator.partition import Partition

P = ("inventory", "payment")


def life(oid: str, outcome: str = "commit"):
    """The tx.log events of one order, in the order the pipeline writes them."""
    yes = outcome == "commit"
    reason = None if yes else "out_of_stock"
    return [TxBegun(oid, P, 10_000), Voted(oid, "inventory", "yes" if yes else "no", reason),
            Voted(oid, "payment", "yes", None),
            Decided(oid, outcome, None if yes else "inventory:out_of_stock"),
            Acked(oid, "inventory", outcome), Acked(oid, "payment", outcome)]


def interleave(orders: dict[str, list], seed: int) -> list:
    rng, queues, log = random.Random(seed), {o: list(e) for o, e in orders.items()}, []
    while queues:
        oid = rng.choice(sorted(queues))
        log.append(queues[oid].pop(0))
        if not queues[oid]:
            del queues[oid]
    return log


def test_finished_orders_are_forgotten_and_late_events_ignored():
    part = Partition()
    for offset, e in enumerate(life("a")):
        part.apply(offset, e, 0)
    assert part.open == {} and part.began_at == {}
    assert part.apply(99, Acked("a", "payment", "commit"), 0) == []
    assert part.open == {}


def test_decision_outputs_come_once():
    part = Partition()
    outs = [part.apply(i, e, 5) for i, e in enumerate(life("b", "abort"))]
    assert sum(1 for o in outs if o) == 1
    assert any(dest == "status" and e.status == "REJECTED" for dest, e in outs[1])


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("cut_at", [0.25, 0.5, 0.8])
def test_refold_from_the_committed_point_rebuilds_the_same_open_set(seed, cut_at):
    rng = random.Random(seed)
    orders = {}
    for i in range(12):
        events = life(f"o{i}", rng.choice(["commit", "abort"]))
        orders[f"o{i}"] = events[:rng.randint(1, len(events))]    # some still open
    log = interleave(orders, seed)
    live = Partition()
    cut = int(len(log) * cut_at)
    for offset, e in enumerate(log[:cut]):
        live.apply(offset, e, 0)
    start = live.refold_from(cut)
    rebuilt = Partition()
    for offset in range(start, cut):
        rebuilt.apply(offset, log[offset], 0)
    assert {o: tx for o, (tx, _) in rebuilt.open.items()} == {o: tx for o, (tx, _) in live.open.items()}
    assert rebuilt.began_at == live.began_at
