"""Committed reads and the open transactions that hold them back, on the real cluster."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from topics.read import open_transactions, read

pytestmark = pytest.mark.integration


def values(settings, topic) -> list[bytes]:
    return [m.value() for m in read(settings.kafka(), topic, timeout_s=30)]


def test_an_open_transaction_hides_what_follows_until_it_ends(settings, make_topic, unique):
    topic = make_topic("tx", partitions=1)
    tx = Producer(settings.kafka(**{"transactional.id": f"{unique}-tx"}))
    tx.init_transactions(30)
    tx.begin_transaction()
    tx.produce(topic, b"in the transaction", partition=0)
    tx.flush(30)
    plain = Producer(settings.kafka())
    plain.produce(topic, b"after it", partition=0)
    assert plain.flush(30) == 0

    assert open_transactions(settings.kafka(), [(topic, 0)]) == {(topic, 0): (0, 2)}
    assert values(settings, topic) == []  # committed, yet behind the open transaction

    tx.commit_transaction(30)
    # the commit returns once decided; the markers that end it on the partition follow
    deadline = time.monotonic() + 10
    while open_transactions(settings.kafka(), [(topic, 0)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_transactions(settings.kafka(), [(topic, 0)]) == {}
    assert values(settings, topic) == [b"in the transaction", b"after it"]


def test_a_start_the_log_no_longer_holds_is_an_error_not_a_jump_to_the_end(settings, make_topic):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    from topics.read import ReadError

    topic = make_topic("gone", partitions=1)
    plain = Producer(settings.kafka())
    for i in range(5):
        plain.produce(topic, f"r{i}".encode(), partition=0)
    assert plain.flush(30) == 0
    admin = AdminClient(settings.kafka())  # kept: its futures die with it
    deleted = admin.delete_records([TopicPartition(topic, 0, 3)])
    for future in deleted.values():
        future.result(timeout=30)
    assert [m.value() for m in read(settings.kafka(), topic, {0: 3}, timeout_s=30)] == [
        b"r3",
        b"r4",
    ]
    with pytest.raises(ReadError):
        list(read(settings.kafka(), topic, {0: 1}, timeout_s=30))
