"""Counters count what committed: a handler's outputs carry what is to be counted, and the loop
counts it once the brokers have acknowledged the batch's outputs (tests/integration/
test_committed_counts.py runs the loop itself); here the handler's side only."""

from __future__ import annotations

from types import SimpleNamespace

from offline import offline_settings
from records import Msg

from schemas import codec
from schemas.events import TxBegun, Voted
from topics.catalogue import PARTITIONS, TX_LOG, Names
from topics.partitioner import partition_for
from workers.coordinator.open_orders import Partition
from workers.coordinator.worker import CoordinatorHandler
from workers.runtime.metrics import DECISIONS, Metrics
from workers.runtime.signing import AUTHORS, Signer, Verifier, author


def test_the_coordinator_counts_a_decision_only_once_it_commits():
    metrics = Metrics("coordinator")
    nothing_stored = SimpleNamespace(run=lambda work: {})  # the store knows no order yet
    keys = {a: a.encode() * 8 for a in AUTHORS}
    handler = CoordinatorHandler(
        offline_settings(deadline_ms=10_000),
        nothing_stored,
        Names(),
        metrics,
        verifier=Verifier(keys),
    )
    home = partition_for(b"o-1", PARTITIONS)  # where every event of o-1 sits
    handler.partitions[home] = Partition()  # as assigned
    events = [
        TxBegun("o-1", ("inventory", "payment"), 10_000),
        Voted("o-1", "inventory", "yes", None),
        Voted("o-1", "payment", "yes", None),
    ]
    tx_log = Names().topic(TX_LOG)
    msgs = []
    for n, e in enumerate(events):
        value, headers = codec.encode(e)
        signer = Signer(author(e), keys[author(e)], (tx_log,))
        headers = signer.headers(tx_log, b"o-1", value, headers)
        msgs.append(Msg(value, headers, _key=b"o-1", _topic=tx_log, _partition=home, _offset=n))
    outs = handler.process(msgs, 1)

    def decisions() -> float:
        return (
            metrics.registry.get_sample_value(DECISIONS, {"outcome": "commit", "reason": ""}) or 0
        )

    assert outs and decisions() == 0
    for out in outs:  # as the loop does once the outputs are acknowledged
        if out.count is not None:
            out.count()
    assert decisions() == 1
