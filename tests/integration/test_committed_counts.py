"""A worker's counters count what was acknowledged: a batch with an output that can never be
delivered ends the loop with nothing counted, and the batch, read again by the next loop, is
counted once. The loop runs in this process against the real cluster; the handler dead-letters
what it reads and, while told to, adds an output no producer accepts (over librdkafka's
message.max.bytes)."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Producer

from topics.catalogue import ORDERS_PLACED
from workers.runtime.clients import LoopConfig
from workers.runtime.handler import Out, Stateless
from workers.runtime.loop import Fatal, Loop
from workers.runtime.messages import decode_batch
from workers.runtime.metrics import CONSUMED, DEAD_LETTERS, PRODUCED, Metrics

pytestmark = pytest.mark.integration


class DeadLettering(Stateless):
    def __init__(self, source: str, dlq: str, metrics: Metrics):
        self.topics, self.dlq, self.metrics = (source,), dlq, metrics
        self.abort = True

    def process(self, messages, now_ms):
        _, outs = decode_batch(
            messages,
            self.metrics,
            now_ms,
            ORDERS_PLACED.events,
            self.dlq,
            default_type="OrderPlaced",
        )
        if self.abort:
            outs.append(Out(self.dlq, b"too-big", b"x" * 1_000_001))
        return outs


def count(metrics: Metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, {"worker": "intake", **labels}) or 0


def wait_for(what, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_undelivered_batch_counts_nothing(settings, make_topic, unique):
    source, dlq = make_topic("in", partitions=1), make_topic("dlq", partitions=1)
    producer = Producer(settings.kafka(**{"acks": "all"}))
    producer.produce(source, key=b"k", value=b"{")
    assert producer.flush(30) == 0
    metrics = Metrics("intake")
    handler = DeadLettering(source, dlq, metrics)
    cfg = LoopConfig(group=f"{unique}.g", instance="0")
    with pytest.raises(Fatal, match="could not be produced"):
        Loop(settings, cfg, handler, metrics).run()
    assert count(metrics, DEAD_LETTERS, reason="undecodable") == 0
    assert count(metrics, CONSUMED, topic=source) == 0
    assert count(metrics, PRODUCED, topic=dlq) == 0
    handler.abort = False
    loop = Loop(settings, cfg, handler, metrics)  # as a restarted worker
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: count(metrics, PRODUCED, topic=dlq) == 1)
        time.sleep(1)  # and nothing more is counted
        assert count(metrics, DEAD_LETTERS, reason="undecodable") == 1
        assert count(metrics, CONSUMED, topic=source) == 1
    finally:
        loop.stop()
        thread.join(30)
