"""Counters count what committed: a handler's outputs carry what is to be counted, and the loop
counts it once the batch's Kafka transaction has committed (tests/integration/
test_committed_counts.py runs the loop itself)."""
from __future__ import annotations

from types import SimpleNamespace

from records import Msg
from schemas import codec
from schemas.events import TxBegun, Voted
from topics.catalogue import Names
from workers.coordinator.partition import Partition
from workers.coordinator.worker import CoordinatorHandler
from workers.runtime.metrics import Metrics


def test_the_coordinator_counts_a_decision_only_once_it_commits():
    metrics = Metrics("coordinator")
    nothing_stored = SimpleNamespace(run=lambda work: {})     # the store knows no order yet
    handler = CoordinatorHandler(SimpleNamespace(deadline_ms=10_000), nothing_stored, Names(),
                                 metrics)
    handler.partitions[2] = Partition()                       # as assigned
    events = [TxBegun("o-1", ("inventory", "payment"), 10_000),
              Voted("o-1", "inventory", "yes", None), Voted("o-1", "payment", "yes", None)]
    outs = handler.process([Msg(*codec.encode(e), _offset=n) for n, e in enumerate(events)], 1)

    def decisions() -> float:
        return metrics.registry.get_sample_value("orderbus_decisions_total",
                                                 {"outcome": "commit", "reason": ""}) or 0
    assert outs and decisions() == 0
    for out in outs:          # as the loop does once the transaction has committed
        if out.count is not None:
            out.count()
    assert decisions() == 1
