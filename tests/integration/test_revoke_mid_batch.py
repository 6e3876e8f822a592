"""A partition revoked inside consume(), after poll() has returned one of its messages: the loop
neither processes that message nor commits its offset, since the partition's new owner will.

librdkafka serves a rebalance inside whichever poll or consume call it is in; the test makes that
happen at the worst moment by doing, inside the loop's consume(), what librdkafka does there: the
revoke callback, then the unassignment."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer, TopicPartition

from workers.runtime.clients import LoopConfig
from workers.runtime.handler import Stateless
from workers.runtime.loop import Loop
from workers.runtime.metrics import Metrics

pytestmark = pytest.mark.integration


class Recorder(Stateless):
    def __init__(self, topic: str):
        self.topics = (topic,)
        self.seen: list[tuple[int, int]] = []

    def process(self, messages, now_ms):
        self.seen += [(m.partition(), m.offset()) for m in messages]
        return []


class RevokingInConsume:
    """The loop's consumer, which revokes the partition of poll()'s message in the next
    consume()."""

    def __init__(self, loop: Loop):
        self.loop, self.real, self.revoked = loop, loop.consumer, None

    def __getattr__(self, name):
        return getattr(self.real, name)

    def poll(self, timeout):
        msg = self.real.poll(timeout)
        if msg is not None and msg.error() is None and self.revoked is None:
            self.revoked = TopicPartition(msg.topic(), msg.partition())
        return msg

    def consume(self, n, timeout):
        if self.revoked is not None and self.revoked in self.real.assignment():
            self.loop._on_revoke(self.real, [self.revoked])
            self.real.incremental_unassign([self.revoked])
        return self.real.consume(n, timeout)


def test_a_message_of_a_partition_revoked_mid_batch_is_neither_processed_nor_committed(
    settings, make_topic, unique
):
    topic = make_topic("rv", partitions=2)
    handler = Recorder(topic)
    loop = Loop(
        settings, LoopConfig(group=f"{unique}.g", instance="0"), handler, Metrics("revoke-test")
    )
    real = loop.consumer
    real.subscribe(
        [topic], on_assign=loop._on_assign, on_revoke=loop._on_revoke, on_lost=loop._on_revoke
    )
    try:
        deadline = time.monotonic() + 60
        while len(loop.consumer.assignment()) < 2:
            assert time.monotonic() < deadline, "never assigned both partitions"
            loop._once()
        producer = Producer(settings.kafka())
        for p in (0, 1):
            producer.produce(topic, b"m", key=b"k", partition=p)
        assert producer.flush(30) == 0
        spy = RevokingInConsume(loop)
        loop.consumer = spy
        while spy.revoked is None:
            assert time.monotonic() < deadline, "nothing consumed"
            loop._once()
        for _ in range(20):  # whatever else there is to read
            loop._once()
        gone = spy.revoked.partition
        assert all(p != gone for p, _ in handler.seen), handler.seen
        committed = real.committed([TopicPartition(topic, gone)], timeout=30)[0]
        assert committed.offset < 0, (
            f"partition {gone} committed at {committed.offset} by a consumer that no longer owns it"
        )
    finally:
        real.close()
        loop.producer.flush(10)
