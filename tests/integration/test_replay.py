"""`orderbus replay` against the real cluster: offset resets planned as Kafka's own tool plans
them, dead letters re-driven (and parked, and a killed re-drive run again), the whole order topic
replayed into a running pipeline without effect, the status read model rebuilt and swapped, the
coordinator's state rebuilt, every decision audited."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import kafka_tool
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from pipeline import order

from orderbus.commands import cli
from orderbus.ops.verify import verify
from topics.catalogue import (
    DLQ_AT_MS,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TOPIC,
    DLQ_WORKER,
    ORDERS_DLQ,
)
from topics.group_reset import Groups, ResetSpec
from topics.producer import OrderPublisher
from topics.read import read
from topics.redrive import read_letters

pytestmark = pytest.mark.integration


def run(env: dict, monkeypatch, capsys, *argv) -> tuple[int, str]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = cli.main(["replay", *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def wait_inactive(settings, group: str, timeout_s: float = 30) -> None:
    groups, deadline = Groups(settings.kafka()), time.monotonic() + timeout_s
    while groups.members(group):
        assert time.monotonic() < deadline, f"{group} still has members"
        time.sleep(0.5)


# -- reset against Kafka's ConsumerGroupCommand ------------------------------------------------


def kafka_plan(settings, group: str, topic: str, *how: str) -> dict[int, int]:
    out = kafka_tool.run(
        settings,
        kafka_tool.CONSUMER_GROUPS,
        "--group",
        group,
        "--reset-offsets",
        *how,
        "--topic",
        topic,
        "--dry-run",
    )
    assert out.returncode == 0, out.stderr
    plan = {}
    for line in out.stdout.splitlines():
        cols = line.split()
        if len(cols) == 4 and cols[1] == topic:
            plan[int(cols[2])] = int(cols[3])
    return plan


def ours(settings, group, topic, spec) -> dict[int, int]:
    return {
        p.partition: p.target for p in Groups(settings.kafka()).plan(group, spec, {topic: None})
    }


def test_reset_plans_as_kafkas_own_tool(settings, make_topic, unique, monkeypatch, capsys):
    topic, group = make_topic("reset", partitions=3), f"{unique}.g"
    t0 = int(time.time() * 1000) - 3_600_000  # an hour ago, then half an hour ago
    producer = Producer(settings.kafka(**{"acks": "all"}))
    for p in range(3):
        for i in range(20):
            producer.produce(
                topic, value=b"x", partition=p, timestamp=t0 + (0 if i < 10 else 1_800_000) + i
            )
    assert producer.flush(30) == 0
    c = Consumer(settings.kafka(**{"group.id": group, "enable.auto.commit": False}))
    c.commit(offsets=[TopicPartition(topic, p, 12 + p) for p in range(3)], asynchronous=False)
    c.close()

    middle = datetime.fromtimestamp((t0 + 900_000) / 1000, timezone.utc)
    iso = middle.strftime("%Y-%m-%dT%H:%M:%S.000")  # Kafka's tool reads it as local time
    local_ms = int(datetime.fromisoformat(iso).timestamp() * 1000)
    future = "2999-01-01T00:00:00.000"
    cases = [
        (("--to-offset", "5"), ResetSpec("to-offset", 5)),
        (("--to-offset", "1000"), ResetSpec("to-offset", 1000)),
        (("--shift-by", "-4"), ResetSpec("shift-by", -4)),
        (("--shift-by", "100"), ResetSpec("shift-by", 100)),
        (("--to-datetime", iso), ResetSpec("to-datetime", local_ms)),
        (
            ("--to-datetime", future),
            ResetSpec("to-datetime", int(datetime.fromisoformat(future).timestamp() * 1000)),
        ),
        (("--to-datetime", "2000-01-01T00:00:00.000"), ResetSpec("to-datetime", 946684800000)),
    ]
    for how, spec in cases:
        assert ours(settings, group, topic, spec) == kafka_plan(settings, group, topic, *how), how

    code, out = run(
        {},
        monkeypatch,
        capsys,
        "reset",
        "--group",
        group,
        "--topic",
        f"{topic}:1",
        "--to-offset",
        "3",
        "--execute",
    )
    assert code == 0, out
    committed = Groups(settings.kafka()).committed(group)
    assert {k: v[0] for k, v in committed.items()} == {
        (topic, 0): 12,
        (topic, 1): 3,
        (topic, 2): 14,
    }

    code, out = run(
        {},
        monkeypatch,
        capsys,
        "reset",
        "--group",
        f"{unique}.nobody",
        "--to-earliest",
        "--topic",
        topic,
    )
    assert code == 2 and "no consumer group" in out
    code, out = run(
        {},
        monkeypatch,
        capsys,
        "reset",
        "--group",
        group,
        "--to-earliest",
        "--topic",
        f"{unique}.nothing",
    )
    assert code == 2 and "no topic" in out

    active = Consumer(
        settings.kafka(
            **{
                "group.id": group,
                "client.id": "still-here",
                "session.timeout.ms": 6000,
                "enable.auto.commit": False,
            }
        )
    )
    active.subscribe([topic])
    deadline = time.monotonic() + 30
    while not active.assignment() and time.monotonic() < deadline:
        active.poll(0.2)
    try:
        code, out = run(
            {}, monkeypatch, capsys, "reset", "--group", group, "--to-earliest", "--execute"
        )
        assert code == 2 and "active member" in out and "still-here" in out
    finally:
        active.close()
    after = {k: v[0] for k, v in Groups(settings.kafka()).committed(group).items()}
    assert after[(topic, 1)] == 3  # unchanged


# -- the pipeline ------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def forget_replay_log(settings, pipe):
    yield
    (settings.home / "replay" / f"{pipe.settings.names.topic(ORDERS_DLQ)}.jsonl").unlink(
        missing_ok=True
    )


def letters(pipe, key: bytes) -> list:
    return [
        l
        for l in read_letters(pipe.settings.kafka(), pipe.settings.names.topic(ORDERS_DLQ))
        if l.key == key
    ]


def wait_letters(pipe, key: bytes, n: int, timeout_s: float = 60) -> list:
    deadline = time.monotonic() + timeout_s
    while len(found := letters(pipe, key)) < n:
        assert time.monotonic() < deadline, f"{len(found)} dead letters for {key}, wanted {n}"
        time.sleep(0.5)
    return found


def test_dead_letter_replayed_until_parked(pipe, monkeypatch, capsys):
    pipe.publisher.publish_raw(
        b"rp-unknown",
        b'{"order_id": "rp-unknown"}',
        headers=[("type", b"OrderShipped"), ("trace", b"t-1")],
    )
    assert pipe.publisher.flush(30) == 0
    wait_letters(pipe, b"rp-unknown", 1)
    code, out = run(pipe.env, monkeypatch, capsys, "dlq", "--max-replays", "2")
    assert code == 0 and "unknown_event" in out and "dry run" in out
    assert len(letters(pipe, b"rp-unknown")) == 1  # a dry run re-publishes nothing
    for round_ in (1, 2):
        code, out = run(pipe.env, monkeypatch, capsys, "dlq", "--execute", "--max-replays", "2")
        assert code == 0 and "re-published 1 of 1" in out, out
        found = wait_letters(pipe, b"rp-unknown", round_ + 1)
        assert found[-1].count() == round_ and found[-1].header("trace") == "t-1"
        assert found[-1].reason == "unknown_event"
    code, out = run(pipe.env, monkeypatch, capsys, "dlq", "--execute", "--max-replays", "2")
    assert (
        "parked 1" in out and "replayed 2 times already" in out and "nothing to re-publish" in out
    )
    code, out = run(pipe.env, monkeypatch, capsys, "dlq", "--execute", "--max-replays", "2")
    assert "nothing to re-publish" in out  # idempotent when repeated


def test_a_killed_redrive_run_again_applies_each_order_once(pipe, settings):
    n, price = 150, 100
    pipe.stock(**{"rk-sku": 1000})
    pipe.account(**{"rk-c": 1_000_000})
    placed, dlq = pipe.placed, pipe.settings.names.topic(ORDERS_DLQ)
    producer = Producer(pipe.settings.kafka(**{"acks": "all", "partitioner": "murmur2_random"}))
    ids = [f"rk-{i}" for i in range(n)]
    for i, oid in enumerate(ids):
        # valid orders, as an older intake would have refused them (the "fix" is deployed now)
        value, headers, _ = OrderPublisher.encode(order(oid, "rk-c", ("rk-sku", 1, price)))
        headers += [
            (DLQ_REASON, b"unknown_version"),
            (DLQ_TOPIC, placed.encode()),
            (DLQ_PARTITION, b"0"),
            (DLQ_OFFSET, str(10**9 + i).encode()),
            (DLQ_WORKER, b"intake"),
            (DLQ_AT_MS, b"0"),
        ]
        producer.produce(dlq, key=oid.encode(), value=value, headers=headers)
    assert producer.flush(30) == 0
    log = settings.home / "replay" / f"{dlq}.jsonl"
    before = len(log.read_text().splitlines()) if log.exists() else 0
    argv = [
        sys.executable,
        "-m",
        "orderbus",
        "replay",
        "dlq",
        "--reason",
        "unknown_version",
        "--execute",
        "--rate",
        "50",
    ]
    env = {**os.environ, **pipe.env}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not log.exists() or len(log.read_text().splitlines()) < before + 20:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    logged = len(log.read_text().splitlines()) - before
    assert 20 <= logged < n, logged  # killed mid-way
    again = subprocess.run(argv[:-2], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"already replayed {logged}" in again.stdout, again.stdout

    pipe.wait_final(ids, timeout_s=120)
    copies = {}
    for m in read(pipe.settings.kafka(), placed):
        key = (m.key() or b"").decode()
        if key.startswith("rk-"):
            copies[key] = copies.get(key, 0) + 1
    assert set(copies) == set(ids) and max(copies.values()) <= 2
    pipe.wait_settled()
    assert pipe.sql("inventory", "SELECT available, committed FROM stock WHERE sku = 'rk-sku'") == [
        (1000 - n, n)
    ]
    assert pipe.sql(
        "payments", "SELECT captured_cents FROM accounts WHERE customer_id = 'rk-c'"
    ) == [(n * price,)]
    held = pipe.sql(
        "inventory",
        "SELECT count(*) FROM holds WHERE order_id LIKE 'rk-%%' AND state = 'committed' AND "
        "amounts = '{\"rk-sku\": 1}'",
    )
    assert held == [(n,)]
    print(f"killed after {logged} acks; re-published twice: {sum(v == 2 for v in copies.values())}")


def test_replaying_the_whole_order_topic_changes_nothing(pipe, settings, monkeypatch, capsys):
    pipe.stock(**{"rw-sku": 50})
    pipe.account(**{"rw-rich": 100_000, "rw-poor": 10})
    orders = [order(f"rw-{i}", "rw-rich", ("rw-sku", 1, 100)) for i in range(20)]
    orders += [
        order("rw-poor-1", "rw-poor", ("rw-sku", 1, 100)),
        order("rw-oos", "rw-rich", ("rw-sku", 999, 1)),
    ]
    pipe.publish(*orders)
    pipe.wait_final([o["order_id"] for o in orders], timeout_s=120)
    pipe.wait_settled()
    assert verify(pipe.settings, wait_s=60)["violations"] == []
    snapshot = lambda: (
        pipe.sql("inventory", "SELECT * FROM stock ORDER BY sku"),
        pipe.sql("payments", "SELECT * FROM accounts ORDER BY customer_id"),
        pipe.sql("orders", "SELECT * FROM order_status ORDER BY order_id"),
    )
    before = snapshot()

    group = pipe.settings.names.group("intake")
    code, out = run(
        pipe.env, monkeypatch, capsys, "reset", "--group", group, "--to-earliest", "--execute"
    )
    assert code == 2 and "active member" in out  # refused while intake runs
    intake = pipe.sup.find("intake")
    pipe.sup.hold(intake)
    try:
        wait_inactive(pipe.settings, group)
        code, out = run(
            pipe.env, monkeypatch, capsys, "reset", "--group", group, "--to-earliest", "--execute"
        )
        assert code == 0 and "committed" in out, out
        assert all(v[0] == 0 for v in Groups(settings.kafka()).committed(group).values())
    finally:
        pipe.sup.release(intake)
    result = verify(pipe.settings, wait_s=90)
    assert result["violations"] == [], result["violations"]
    pipe.wait_settled()
    assert snapshot() == before
    code, out = run(pipe.env, monkeypatch, capsys, "audit", "--json")
    assert code == 0, out


def test_rebuild_status_equals_live_and_swaps(pipe, monkeypatch, capsys):
    group = pipe.settings.names.group("status")
    code, out = run(pipe.env, monkeypatch, capsys, "rebuild", "status", "--execute")
    assert code == 2 and "active member" in out
    status = pipe.sup.find("status")
    pipe.sup.hold(status)
    try:
        wait_inactive(pipe.settings, group)
        live = pipe.sql("orders", "SELECT * FROM order_status ORDER BY order_id")
        code, out = run(pipe.env, monkeypatch, capsys, "rebuild", "status")
        assert code == 0 and "equals the live one" in out, out
        assert pipe.sql("orders", "SELECT * FROM order_status_rebuild ORDER BY order_id") == live
        pipe.sql("orders", "UPDATE order_status SET status = 'PENDING' WHERE order_id = 'rw-1'")
        pipe.sql("orders", "DELETE FROM order_status WHERE order_id = 'rw-2'")
        code, out = run(pipe.env, monkeypatch, capsys, "rebuild", "status")
        assert code == 1 and "only rebuilt 1, different 1" in out, out
        code, out = run(pipe.env, monkeypatch, capsys, "rebuild", "status", "--execute")
        assert code == 0 and "swapped" in out, out
        assert pipe.sql("orders", "SELECT * FROM order_status ORDER BY order_id") == live
        indexes = {
            r[0]
            for r in pipe.sql(
                "orders", "SELECT indexname FROM pg_indexes WHERE tablename = 'order_status'"
            )
        }
        assert indexes == {"order_status_pkey", "order_status_by_status"}
    finally:
        pipe.sup.release(status)


def test_a_status_worker_started_during_the_rebuild_loses_nothing_to_the_swap(
    pipe, monkeypatch, capsys
):
    """A status worker that starts while `rebuild status --execute` runs (a supervisor
    restarting it, say), after the command's check for members: what it writes meanwhile is not
    deleted by the swap. It waits for the swap, then writes on top of the rebuilt rows."""
    import threading
    from types import SimpleNamespace

    from workers.main import build
    from workers.runtime.liveness import Liveness
    from workers.runtime.metrics import Metrics
    from workers.status import rebuild
    from workers.status.worker import write

    late = SimpleNamespace(order_id="rw-late", status="SHIPPED", reason=None, at_ms=1)
    started: list[threading.Thread] = []
    compare = rebuild.compare

    def compare_while_a_worker_starts(dsn):
        handler = build(
            "status", pipe.settings.as_principal("status"), Metrics("status"), Liveness()
        )
        worker = threading.Thread(target=lambda: handler.db.run(lambda cur: write(cur, [late])))
        worker.start()
        started.append(worker)
        time.sleep(2)  # long enough for its write to commit, were nothing holding it
        return compare(dsn)

    monkeypatch.setattr(rebuild, "compare", compare_while_a_worker_starts)
    status = pipe.sup.find("status")
    pipe.sup.hold(status)
    try:
        wait_inactive(pipe.settings, pipe.settings.names.group("status"))
        code, out = run(pipe.env, monkeypatch, capsys, "rebuild", "status", "--execute")
        assert code == 0 and "swapped" in out, out
        started[0].join(60)
        assert not started[0].is_alive(), "the worker's write never went through"
        found = pipe.sql("orders", "SELECT status FROM order_status WHERE order_id = 'rw-late'")
        assert found == [("SHIPPED",)], "the swap deleted what a worker wrote during the rebuild"
    finally:
        pipe.sup.release(status)
        pipe.sql("orders", "DELETE FROM order_status WHERE order_id = 'rw-late'")


def test_rebuild_coordinator_and_audit(pipe, monkeypatch, capsys):
    code, out = run(pipe.env, monkeypatch, capsys, "rebuild", "coordinator", "--json")
    r = json.loads(out)
    assert code == 0 and r["differences"] == [] and r["decisions_equal_recorded"], out
    assert r["decided"] == r["orders"] > 0
    code, out = run(pipe.env, monkeypatch, capsys, "audit", "--json")
    r = json.loads(out)
    assert code == 0 and r["mismatches"] == [] and r["orders"] >= 20
    pipe.sql("payments", "UPDATE holds SET amounts = '{\"rw-rich\": 1}' WHERE order_id = 'rw-3'")
    try:
        code, out = run(pipe.env, monkeypatch, capsys, "audit", "--json")
        r = json.loads(out)
        assert code == 1
        assert [(m["order_id"], m["kind"]) for m in r["mismatches"]] == [
            ("rw-3", "payment_not_applied")
        ]
    finally:
        pipe.sql(
            "payments", "UPDATE holds SET amounts = '{\"rw-rich\": 100}' WHERE order_id = 'rw-3'"
        )
