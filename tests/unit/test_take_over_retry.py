"""A coordinator taking partitions over while a broker is down (its take-over reads tx.log and the
group's committed offsets) tries again while the cluster cannot answer, for a while, rather than
end the process on the first error; past that, the error ends it and the supervisor's restart
tries again."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from offline import offline_settings

from topics.catalogue import TX_LOG, Names
from workers.coordinator import worker
from workers.coordinator.open_orders import Partition
from workers.coordinator.worker import CoordinatorHandler
from workers.runtime.metrics import Metrics
from workers.runtime.signing import AUTHORS, Verifier

DOWN = KafkaException(
    KafkaError(KafkaError._DESTROY_BROKER, "Broker handle destroyed without termination")
)


def handler() -> CoordinatorHandler:
    keys = {a: a.encode() * 8 for a in AUTHORS}
    settings = offline_settings(deadline_ms=10_000)
    return CoordinatorHandler(
        settings, None, Names(), Metrics("coordinator"), verifier=Verifier(keys)
    )


def failing(times: int, calls: list):
    def take_over(settings, db, group, topic, parts, beat):
        calls.append(parts)
        if len(calls) <= times:
            raise DOWN
        return {p: Partition(7) for p in parts}, {p: 7 for p in parts}

    return take_over


def test_a_take_over_that_fails_while_a_broker_is_down_is_tried_again(monkeypatch):
    calls: list = []
    monkeypatch.setattr(worker, "take_over", failing(2, calls))
    monkeypatch.setattr(worker, "TAKE_OVER_PAUSE_S", 0.01)
    h = handler()
    beats = []
    h.on_progress = lambda: beats.append(1)
    tx_log = Names().topic(TX_LOG)
    starts = h.assigned([TopicPartition(tx_log, 1), TopicPartition(tx_log, 4)])
    assert starts == {(tx_log, 1): 7, (tx_log, 4): 7}
    assert calls == [[1, 4]] * 3 and sorted(h.partitions) == [1, 4]
    assert len(beats) >= 2  # the watchdog hears that the wait is on purpose


def test_a_take_over_that_keeps_failing_ends_the_process_in_time(monkeypatch):
    calls: list = []
    monkeypatch.setattr(worker, "take_over", failing(1_000_000, calls))
    monkeypatch.setattr(worker, "TAKE_OVER_PAUSE_S", 0.01)
    monkeypatch.setattr(worker, "TAKE_OVER_RETRY_S", 0.1)
    h = handler()
    with pytest.raises(KafkaException):
        h.assigned([TopicPartition(Names().topic(TX_LOG), 0)])
    assert 2 <= len(calls) < 1000 and h.partitions == {}
