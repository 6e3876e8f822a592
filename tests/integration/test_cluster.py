"""The real cluster: durability with acks=all and idempotence, a broker killed under load."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg2
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from infra import procs
from infra.kafka import cluster as kafka
from topics.admin import ensure

pytestmark = pytest.mark.integration


def durable_producer(settings) -> Producer:
    return Producer(
        settings.kafka(
            **{
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "delivery.timeout.ms": 120000,
            }
        )
    )


def read_all(
    settings, topic: str, partitions: int, expected: int, timeout_s: float = 60
) -> list[bytes]:
    consumer = Consumer(
        settings.kafka(
            **{
                "group.id": f"{topic}.reader",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values, deadline = [], time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                values.append(msg.value())
        # anything beyond the expected count would be a duplicate: drain briefly to see it
        for msg in consumer.consume(1000, timeout=1.0):
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_every_acknowledged_message_is_read_back_once(settings, make_topic):
    topic = make_topic(partitions=6)
    producer, acked = durable_producer(settings), []

    def on_delivery(err, msg):
        if err is None:
            acked.append(msg.value())

    for i in range(5000):
        producer.produce(topic, key=str(i % 97), value=f"m{i}".encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert len(acked) == 5000
    values = read_all(settings, topic, 6, len(acked))
    assert sorted(values) == sorted(acked)


def test_catalogue_topics_have_rf3_and_min_isr2(settings):
    reports = ensure(settings.kafka(), create=False, names=settings.names)
    assert reports and all(r.action == "ok" for r in reports), reports
    md = AdminClient(settings.kafka()).list_topics(timeout=10)
    assert len(md.brokers) == 3, "the test suite expects the default three-broker cluster"
    for r in reports:
        for p in md.topics[r.name].partitions.values():
            assert len(p.replicas) == 3


def test_brokers_run_at_the_configured_niceness(settings):
    layout = settings.layout()
    for node in layout.nodes:
        pid = procs.running(kafka.pidfile(layout, node))
        assert pid is not None, f"broker {node} is not running"
        # /proc/<pid>/stat: the 19th field is the niceness (the name in parentheses has no spaces)
        niceness = int(Path(f"/proc/{pid}/stat").read_text().split()[18])
        assert niceness == kafka.nice(), f"broker {node} runs at nice {niceness}"


def test_broker_sigkill_while_producing_loses_nothing(settings, make_topic):
    layout = settings.layout()
    topic = make_topic(partitions=6)
    victim = 2
    producer, acked, ack_times = durable_producer(settings), [], []

    def on_delivery(err, msg):
        if err is None:
            acked.append(msg.value())
            ack_times.append(time.monotonic())

    start = time.monotonic()
    killed_at, i = None, 0
    while time.monotonic() - start < 20:  # bounded: 20 s of load at ~1,000 msg/s
        producer.produce(topic, key=str(i % 101), value=f"m{i}".encode(), on_delivery=on_delivery)
        producer.poll(0)
        i += 1
        if killed_at is None and time.monotonic() - start > 3:
            os.kill(procs.read_pid(kafka.pidfile(layout, victim)), signal.SIGKILL)
            killed_at = time.monotonic()
        time.sleep(0.001)
    assert producer.flush(120) == 0
    after = [t for t in ack_times if t > killed_at]
    assert after, "production did not continue after the broker was killed"
    gaps = [b - a for a, b in zip([killed_at] + after, after)]
    stall = max(gaps)
    print(
        f"\nproduce stall after SIGKILL of broker {victim}: {stall:.2f}s "
        f"({len(acked)} messages acknowledged of {i})"
    )
    assert stall < 15

    kafka.start_node(layout, victim)
    deadline = time.monotonic() + 90
    admin = AdminClient(settings.kafka())
    while True:
        md = admin.list_topics(topic, timeout=10)
        if all(len(p.isrs) == 3 for p in md.topics[topic].partitions.values()):
            break
        assert time.monotonic() < deadline, "the restarted broker did not rejoin the ISR in 90 s"
        time.sleep(1)
    values = read_all(settings, topic, 6, len(acked))
    assert sorted(values) == sorted(acked)  # nothing acknowledged lost, nothing doubled


def test_a_role_cannot_connect_to_another_service_database(settings):
    own = psycopg2.connect(settings.dsns["inventory"])
    own.close()
    foreign = settings.dsns["inventory"].replace("dbname=inventory", "dbname=payments")
    with pytest.raises(psycopg2.OperationalError) as info:
        psycopg2.connect(foreign)
    assert "no pg_hba.conf entry" in str(info.value) or "permission denied" in str(info.value)
