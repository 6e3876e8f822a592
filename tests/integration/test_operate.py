"""Operating commands against the real cluster and the test's own databases: publish, seed, report,
order. The shared service databases are never touched: the CLI runs in a subprocess whose DSNs
point at databases made for the test."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from infra.postgres import databases
from orderbus.ops.groups import active_groups
from orderbus.ops.report import build_report, count_dead_letters
from schemas.codec import decode
from topics import acl
from topics.partitioner import partition_for
from topics.producer import OrderPublisher

pytestmark = pytest.mark.integration


def read(settings, topic: str, partitions: int, expected: int, timeout: float = 30) -> list:
    consumer = Consumer(
        settings.kafka(
            **{
                "group.id": f"{topic}.reader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list = []
    try:
        for _ in range(int(timeout * 2)):
            out += [m for m in consumer.consume(1000, timeout=0.5) if m.error() is None]
            if len(out) >= expected:
                break
    finally:
        consumer.close()
    return out


ORDER = {
    "order_id": "op-42",
    "customer_id": "cust-0001",
    "currency": "EUR",
    "total_cents": 700,
    "items": [
        {"sku": "sku-0001", "quantity": 2, "unit_price_cents": 200},
        {"sku": "sku-0002", "quantity": 1, "unit_price_cents": 300},
    ],
}


def test_publish_sync_lands_keyed_on_the_java_partition_with_headers(settings, make_topic):
    topic = make_topic(partitions=6)
    publisher = OrderPublisher(settings.kafka(), topic=topic)
    partition, offset = publisher.publish_sync(ORDER, timeout=30)
    assert partition == partition_for(b"op-42", 6) and offset >= 0
    [msg] = read(settings, topic, 6, expected=1)
    assert (msg.key(), msg.partition(), msg.offset()) == (b"op-42", partition, offset)
    assert dict(msg.headers()) == {"type": b"OrderPlaced", "version": b"1"}
    assert decode(msg.value(), msg.headers()).to_dict() == ORDER


@pytest.fixture
def private_env(settings, unique, tmp_path):
    """Env for a CLI subprocess whose databases, topic and group names (by prefix) and home
    belong to this test alone; it reaches Kafka as an external deployment does, with every
    setting from the environment."""
    layout = settings.layout()
    env = {
        **os.environ,
        "ORDERBUS_HOME": str(tmp_path),
        "ORDERBUS_TOPIC_PREFIX": f"{unique}.",
        "ORDERBUS_KAFKA_BOOTSTRAP": settings.bootstrap,
        "ORDERBUS_KAFKA_SECURITY": settings.security,
        "ORDERBUS_KAFKA_CA": settings.ca_file,
    }
    for principal in ("admin", "producer"):
        env[f"ORDERBUS_KAFKA_PASSWORD_{principal.upper()}_FILE"] = str(
            layout.secrets_dir / f"kafka-{principal}.password"
        )
    made = []
    try:
        for service in databases.SERVICES:
            name = f"{unique}_{service}"
            databases.ensure(layout, name, service)
            made.append(name)
            env[f"ORDERBUS_DSN_{service.upper()}"] = databases.dsn(layout, name)
        yield env
    finally:
        for name in made:
            databases.drop(layout, name)
            (layout.secrets_dir / f"pg-{name}.password").unlink(missing_ok=True)


@contextmanager
def producer_may_write(settings, topic: str):
    if settings.security == "plaintext":
        yield
        return
    may = [acl.Grant("producer", "topic", "literal", topic, "write")]
    acl.grant(settings.kafka(), may)
    try:
        yield
    finally:
        acl.revoke(settings.kafka(), may)


def cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orderbus", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_seed_catalog_then_report_and_publish(private_env, tmp_path, make_topic, settings):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            {"skus": {"sku-a": 5, "sku-b": 0, "hot": 1000}, "customers": {"rich": 10**9, "poor": 1}}
        )
    )
    # the running-workers and history checks look at the test's own groups, topics and databases
    done = cli(private_env, "seed", "--catalog", str(catalog), "--price-cents", "250")
    assert done.returncode == 0, done.stderr
    done = cli(private_env, "report", "--json", "--detail")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["orders"] == {
        "placed": 0,
        "pending": 0,
        "confirmed": 0,
        "rejected": 0,
        "shipped": 0,
    }
    assert report["in_doubt"] == 0 and report["rejected_by_reason"] == {}
    assert report["stock"] == {"initial": 1005, "available": 1005, "held": 0, "committed": 0}
    assert report["money"]["balance_cents"] == 10**9 + 1
    assert report["stock_by_sku"]["sku-b"]["available"] == 0
    assert report["money_by_customer"]["poor"] == {
        "initial_cents": 1,
        "balance_cents": 1,
        "held_cents": 0,
        "captured_cents": 0,
    }
    assert cli(private_env, "report").returncode == 0

    # generate against the seeded catalog, to the test's own topic: the producer principal may
    # write only orders.placed, so it is refused there until granted
    topic = make_topic(partitions=3)
    publish = (
        "publish",
        "--generate",
        "40",
        "--seed",
        "9",
        "--invalid-share",
        "0.25",
        "--topic",
        topic,
        "--json",
    )
    if settings.security == "sasl_ssl":
        done = cli(private_env, *publish)
        assert done.returncode == 1 and "TOPIC_AUTHORIZATION_FAILED" in done.stderr
    with producer_may_write(settings, topic):
        done = cli(private_env, *publish)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["published"], summary["delivered"], summary["invalid"]) == (40, 40, 10)
    messages = read(settings, topic, 3, expected=40)
    assert len(messages) == 40
    valid = [m for m in messages if m.headers()]  # invalid ones go raw, without the envelope
    assert len(valid) == 30
    prices = {line.unit_price_cents for m in valid for line in decode(m.value(), m.headers()).items}
    assert prices == {250}  # the price `seed` recorded


def test_seed_and_order_refuse_bad_input(private_env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"skus": {"a": -1}, "customers": {}}))
    done = cli(private_env, "seed", "--catalog", str(bad), "--force")
    assert done.returncode == 2 and "skus['a'] = -1" in done.stderr
    done = cli(private_env, "seed", "--skus", "2", "--force")
    assert done.returncode == 2 and "--stock" in done.stderr
    done = cli(private_env, "order", "no-such-order", "--json")
    assert done.returncode == 1 and "no-such-order" in done.stderr
    done = cli(private_env, "publish", "--generate", "5", "--topic", "unused")
    assert done.returncode == 2 and "orderbus seed" in done.stderr


def test_dead_letter_count_skips_aborted_writes_and_markers(settings, make_topic, unique):
    topic = make_topic(partitions=2)
    producer = Producer(settings.kafka(**{"transactional.id": f"{unique}.tx"}))
    producer.init_transactions(30)
    for commit, n in ((True, 3), (False, 2), (True, 1)):
        producer.begin_transaction()
        for i in range(n):
            producer.produce(topic, key=f"k{i}".encode(), value=b"dead")
        (producer.commit_transaction if commit else producer.abort_transaction)(30)
    assert count_dead_letters(settings, topic=topic) == (4, True)


def test_the_running_check_looks_at_its_own_pipelines_groups(settings, make_topic, unique):
    """`seed` and `demo` refuse while workers run in the groups of their pipeline (its topic
    prefix), and never for another pipeline's workers on the same cluster."""
    mine = dataclasses.replace(settings, prefix=f"{unique}.")
    group = mine.names.group("intake")
    consumer = Consumer(settings.kafka(**{"group.id": group, "enable.auto.commit": False}))
    consumer.subscribe([make_topic()])
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            assert time.monotonic() < deadline, f"{group} got no partitions in 30 s"
            consumer.poll(0.5)
        assert active_groups(mine) == [group]
        assert active_groups(dataclasses.replace(settings, prefix=f"{unique}-other.")) == []
    finally:
        consumer.close()


def test_a_report_counts_its_own_pipelines_dead_letters(pipe):
    before = build_report(pipe.settings)["dead_letters"]
    producer = Producer(pipe.settings.as_principal("producer").kafka())
    producer.produce(pipe.placed, key=b"op-garbled", value=b"{not json")
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while not any(d["key"] == b"op-garbled" for d in pipe.dead_letters()):
        assert time.monotonic() < deadline, "intake never dead-lettered the garbled order"
    assert build_report(pipe.settings)["dead_letters"] == before + 1
