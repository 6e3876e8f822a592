"""`orderbus lag` against the real cluster: its numbers equal those of Kafka's own tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import kafka_tool
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from topics import acl
from topics.catalogue import ORDERS_PLACED, Names

pytestmark = pytest.mark.integration

PER_PARTITION = 30
AGE_S = 120  # the first message of every partition is stamped this long ago, one second apart
# partition -> offset the test group commits: halfway, caught up, nothing consumed
COMMITS = {0: 10, 1: PER_PARTITION, 2: 0}
TXN_PARTITION, TXN_MESSAGES = 3, 5  # written in one Kafka transaction; committed up to its marker


def orderbus(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orderbus", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def kafka_describe(settings, group: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(topic, partition) -> (CURRENT-OFFSET, LOG-END-OFFSET, LAG) from kafka-consumer-groups."""
    done = kafka_tool.run(settings, kafka_tool.CONSUMER_GROUPS, "--describe", "--group", group)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    lines = [line.split() for line in out.splitlines() if line.strip()]
    header = next(cols for cols in lines if cols[:1] == ["GROUP"])
    col = {
        name: header.index(name)
        for name in ("TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG")
    }
    rows = [cols for cols in lines if cols[:1] == [group] and len(cols) == len(header)]
    return {
        (r[col["TOPIC"]], int(r[col["PARTITION"]])): (
            int(r[col["CURRENT-OFFSET"]]),
            int(r[col["LOG-END-OFFSET"]]),
            int(r[col["LAG"]]),
        )
        for r in rows
    }


@pytest.fixture
def pipeline(settings, unique):
    """A pipeline's names behind the test's own prefix, with the ACLs `up` gives it: the lag
    monitor sees only a pipeline's topics and groups."""
    names = Names(f"{unique}.")
    if settings.security != "plaintext":
        acl.ensure(settings.kafka(), names)
    yield names
    if settings.security != "plaintext":
        acl.remove(settings.kafka(), names)


@pytest.fixture
def lagging_group(settings, pipeline, make_topic):
    topic = make_topic(ORDERS_PLACED.name, partitions=4)  # the pipeline's, by its prefix
    assert topic == pipeline.topic(ORDERS_PLACED)
    born_ms = int(time.time() * 1000) - AGE_S * 1000
    producer = Producer(settings.kafka(**{"acks": "all"}))
    for p in COMMITS:
        for i in range(PER_PARTITION):
            producer.produce(topic, value=b"x", partition=p, timestamp=born_ms + i * 1000)
    assert producer.flush(30) == 0
    txn = Producer(settings.kafka(**{"transactional.id": f"{pipeline.prefix}lag"}))
    txn.init_transactions(30)
    txn.begin_transaction()
    for _ in range(TXN_MESSAGES):
        txn.produce(topic, value=b"t", partition=TXN_PARTITION)
    txn.commit_transaction(30)
    group = pipeline.group("intake")
    # commits below only
    consumer = Consumer(settings.kafka(**{"group.id": group, "enable.auto.commit": False}))
    offsets = [TopicPartition(topic, p, o) for p, o in COMMITS.items()]
    # the next offset after the last data record is the transaction's commit marker
    offsets.append(TopicPartition(topic, TXN_PARTITION, TXN_MESSAGES))
    consumer.commit(offsets=offsets, asynchronous=False)
    consumer.close()
    return topic, group


def test_lag_agrees_with_kafka_tool(settings, pipeline, lagging_group):
    topic, group = lagging_group
    started = time.monotonic()
    # as the lag principal, which reads this pipeline's topics and groups only
    run = orderbus(
        "lag", "--group", group, "--json", env={"ORDERBUS_TOPIC_PREFIX": pipeline.prefix}
    )
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    ours = {(p["topic"], p["partition"]): p for p in report["partitions"]}
    theirs = kafka_describe(settings, group)
    assert set(theirs) == set(ours) == {(topic, p) for p in (*COMMITS, TXN_PARTITION)}
    for key, (committed, end, lag) in theirs.items():
        assert (ours[key]["committed"], ours[key]["end"], ours[key]["lag"]) == (committed, end, lag)
        assert ours[key]["group"] == group

    # the age of the oldest unconsumed message is its timestamp's
    half = ours[(topic, 0)]
    expected = AGE_S - COMMITS[0]  # message 10 was stamped 10 s after the first
    assert expected - 1 <= half["lag_seconds"] <= expected + took + 5, half
    assert ours[(topic, 2)]["lag_seconds"] >= AGE_S - 1
    assert ours[(topic, 1)] | {"lag_seconds": 0.0, "status": "OK"} == ours[(topic, 1)]

    # only the commit marker is left: Kafka's tool counts it (lag 1), but nothing is waiting
    marker = ours[(topic, TXN_PARTITION)]
    assert (marker["lag"], marker["lag_seconds"], marker["status"]) == (1, 0.0, "OK")

    # nobody in the group and the offsets frozen while work waits: stopped
    assert ours[(topic, 0)]["status"] == ours[(topic, 2)]["status"] == "STOP"
    assert report["groups"] == [
        {
            "group": group,
            "status": "STOP",
            "members": 0,
            "lag": sum(p["lag"] for p in ours.values()),
            "reason": "no member and no commit, with work waiting",
        }
    ]


def test_unknown_group_or_topic_is_a_clear_error(unique):
    run = orderbus("lag", "--group", f"{unique}.nobody")
    assert run.returncode == 2
    assert f"no consumer group '{unique}.nobody'" in run.stderr and run.stdout == ""
    run = orderbus("lag", "--topic", f"{unique}.nothing")
    assert run.returncode == 2
    assert f"no topic '{unique}.nothing'" in run.stderr


def test_no_group_yet_is_an_empty_report(unique):
    prefix = {"ORDERBUS_TOPIC_PREFIX": f"{unique}."}  # a pipeline no worker has joined yet
    run = orderbus("lag", "--json", env=prefix)
    assert (run.returncode, run.stderr) == (0, "")
    assert json.loads(run.stdout) == {"partitions": [], "groups": []}
    run = orderbus("lag", env=prefix)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.split() == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "END",
        "LAG",
        "LAG-S",
        "STATUS",
    ]
