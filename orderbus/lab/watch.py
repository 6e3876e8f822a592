"""A thread that reads a topic's committed records as they become visible, for the tools that
time the pipeline from outside (bench, chaos, failover)."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Message, TopicPartition

from workers.runtime.settings import Settings


class TopicWatcher(threading.Thread):
    """Hands every committed record of `topic`, from the beginning, to `seen(msg, now)` with the
    monotonic time it became visible. Subclasses keep what they need."""

    def __init__(self, settings: Settings, topic: str, log_level: int = 3) -> None:
        super().__init__(daemon=True)
        # log_level 2 hides a broker killed on purpose. A fetch returns as soon as a record is
        # there, so the default 500 ms wait costs no timing accuracy; a short one only made the
        # brokers answer empty fetches by the hundred a second while they were being measured
        self.consumer = Consumer(
            settings.kafka(
                **{
                    "group.id": "orderbus.watcher",
                    "log_level": log_level,
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                }
            )
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
        self.running = True

    def seen(self, msg: Message, now: float) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while self.running:
            # consume() with a timeout waits for a full batch: the first record alone is waited
            # for, so the time it became visible is when the fetch that carried it returned
            first = self.consumer.poll(0.1)
            if first is None:
                continue
            now = time.monotonic()
            for msg in [first] + self.consumer.consume(999, timeout=0):
                if msg.error() is None:
                    self.seen(msg, now)
        self.consumer.close()


def value_of(msg: Message) -> bytes:
    """A record's value: every record of the pipeline's topics has one (the stubs make it optional
    for tombstones, which these topics never carry)."""
    value = msg.value()
    assert value is not None, "a tombstone"
    return value
