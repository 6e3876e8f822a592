"""Back-pressure: while a participant is down, intake begins no more transactions than the
limit allows; the rest wait in orders.placed (no deadline runs there), intake is not taken for
stalled, and every order goes through once the participant is back. A group whose backlog
cannot be read is said, and the others still hold."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from pipeline import Pipeline, order

from topics import acl
from topics.catalogue import COMMANDS
from topics.lag import backlog, group_reader
from workers.intake.hold import KEEP_UNKNOWN_S
from workers.main import build, watched
from workers.runtime import metrics as declared
from workers.runtime.liveness import Liveness

pytestmark = pytest.mark.integration

LIMIT = 20  # records behind in a downstream group before intake holds
ORDERS, RATE = 100, 10.0
HELD_S = 45  # longer than the loop's stall limit (30 s): holding is no stall
SETTLE_S = 5  # after the last order is published, before the count that must not move


@pytest.mark.timeout(180)  # a participant away for its hold time
def test_intake_holds_new_orders_while_a_participant_is_away(settings, tmp_path):
    p = Pipeline(
        settings,
        "b" + uuid.uuid4().hex[:8],
        tmp_path,
        deadline_ms=120_000,
        env={"ORDERBUS_INTAKE_MAX_BACKLOG": str(LIMIT)},
    )
    try:
        p.stock(**{"b-sku": 10_000})
        p.account(bc=10_000_000)
        p.start()
        p.publish(order("b-warm", "bc", ("b-sku", 1, 100)))
        p.wait_final(["b-warm"])
        inventory = p.sup.find("inventory")
        p.sup.hold(inventory)
        ids = [f"b-{i}" for i in range(ORDERS)]
        for oid in ids:  # paced, so the hold has time to take effect
            p.publisher.publish(order(oid, "bc", ("b-sku", 1, 100)))
            time.sleep(1 / RATE)
        assert p.publisher.flush(30) == 0

        def begun() -> int:
            return p.sql("orders", "SELECT count(*) FROM orders WHERE order_id = ANY(%s)", (ids,))[
                0
            ][0]

        # by now every look has seen inventory's backlog; how many slipped through before the
        # first did depends on how long a look takes on this machine (a few round trips)
        time.sleep(SETTLE_S)
        begun_then = begun()
        time.sleep(HELD_S - SETTLE_S - ORDERS / RATE)
        begun_now = begun()
        reader = group_reader(p.settings.kafka(), p.settings.names.group("intake"))
        waiting = sum(
            backlog(
                AdminClient(p.settings.kafka()), reader, p.placed, p.settings.partitions
            ).values()
        )
        intake = p.sup.find("intake")
        print(
            f"\nlimit {LIMIT}: {begun_now} of {ORDERS} orders begun while inventory was away "
            f"({begun_then} {HELD_S - SETTLE_S - ORDERS / RATE:.0f} s earlier), {waiting} waiting "
            f"at intake, intake restarts {intake.restarts}"
        )
        assert begun_now == begun_then, "intake kept beginning orders with inventory away"
        assert begun_now <= ORDERS * 3 // 4, "intake began nearly every order with inventory away"
        assert waiting >= ORDERS - begun_now
        assert intake.restarts == 0, "intake was ended as stalled while holding"
        p.sup.release(inventory)
        final = p.wait_final(ids, timeout_s=120)
        assert {s for s, _ in final.values()} == {"SHIPPED"}, final
    finally:
        p.close()


def test_a_reset_coordinator_group_does_not_hold_intake(settings, tmp_path, monkeypatch, capsys):
    """The coordinator's group reset to the start of tx.log while it is stopped: the coordinator
    resumes at its saved offset, not there, and must tell the group so, or intake reads the
    stale committed offsets as a backlog of all of tx.log and holds every new order for ever
    (nothing else would write the tx.log records that move them)."""
    from test_replay import run, wait_inactive

    limit = 40  # fewer than the tx.log records of the first orders
    p = Pipeline(
        settings,
        "r" + uuid.uuid4().hex[:8],
        tmp_path,
        deadline_ms=10_000,
        env={"ORDERBUS_INTAKE_MAX_BACKLOG": str(limit)},
    )
    try:
        p.stock(**{"r-sku": 10_000})
        p.account(rc=10_000_000)
        p.start()
        first = [f"r-{i}" for i in range(30)]  # about 180 tx.log records
        p.publish(*(order(oid, "rc", ("r-sku", 1, 100)) for oid in first))
        p.wait_final(first, timeout_s=90)
        p.wait_settled(timeout_s=60)
        time.sleep(3)  # the coordinator has saved and committed: nothing open

        group = p.settings.names.group("coordinator")
        p.sup.hold(p.sup.find("coordinator"))
        wait_inactive(p.settings, group)
        code, out = run(
            p.env, monkeypatch, capsys, "reset", "--group", group, "--to-earliest", "--execute"
        )
        assert code == 0, out
        p.sup.release(p.sup.find("coordinator"))
        time.sleep(8)  # the coordinator has taken its partitions over, and intake looked again

        later = [f"r-later-{i}" for i in range(5)]
        p.publish(*(order(oid, "rc", ("r-sku", 1, 100)) for oid in later))
        assert set(p.wait_final(later, timeout_s=60).values()) == {("SHIPPED", None)}
        reader = group_reader(p.settings.kafka(), group)
        assert (
            sum(
                backlog(
                    AdminClient(p.settings.kafka()), reader, p.tx_log_topic, p.settings.partitions
                ).values()
            )
            < limit
        )
    finally:
        p.close()


def test_a_group_whose_backlog_cannot_be_read_is_said_and_blinds_no_other(settings, tmp_path):
    """Intake loses its grant to describe the coordinator's group, so it cannot read that
    group's backlog: past what a failed look keeps, it says so
    (orderbus_backpressure_unknown), and it still holds for inventory's backlog."""
    if settings.security == "plaintext":
        pytest.skip("a plaintext cluster has no ACLs to take away")
    p = Pipeline(settings, "u" + uuid.uuid4().hex[:8], tmp_path)  # no worker runs
    try:
        names = p.settings.names
        # inventory is behind on its input: its group has read none of these
        producer = Producer(p.settings.kafka())
        for i in range(2 * LIMIT):
            producer.produce(names.topic(COMMANDS), key=f"u-{i}".encode(), value=b"{}")
        assert producer.flush(30) == 0
        lost = acl.Grant("intake", "group", "literal", names.group("coordinator"), "describe")
        acl.revoke(p.settings.kafka(), [lost])
        intake = dataclasses.replace(p.settings, intake_max_backlog=LIMIT).as_principal("intake")
        metrics = declared.Metrics("intake")
        handler = build("intake", intake, metrics, Liveness())
        groups = sorted({g for g, _ in watched(names)})

        def sample(name: str, **labels) -> float | None:
            return metrics.registry.get_sample_value(name, {"worker": "intake", **labels})

        try:
            time.sleep(KEEP_UNKNOWN_S + 5)  # past what a failed look keeps
            assert sample(declared.INPUT_HELD) >= 1, (
                "intake holds nothing while one group is unreadable"
            )
            unknown = {g: sample(declared.BACKPRESSURE_UNKNOWN, group=g) for g in groups}
            assert unknown == {g: float(g == names.group("coordinator")) for g in groups}
            acl.grant(p.settings.kafka(), [lost])
            deadline = time.monotonic() + 30
            while sample(declared.BACKPRESSURE_UNKNOWN, group=names.group("coordinator")) != 0:
                assert time.monotonic() < deadline, (
                    "the coordinator's backlog still unknown with the grant back"
                )
                time.sleep(0.5)
            assert sample(declared.INPUT_HELD) >= 1
        finally:
            handler.downstream.close()
    finally:
        p.close()


def test_one_partition_behind_holds_only_the_orders_of_that_partition(settings, tmp_path):
    """Inventory is behind on one partition of its commands only (an instance crash-looping on
    it, say, or its leader offline): intake holds the orders that would land there, and no
    other shop's orders."""
    p = Pipeline(settings, "s" + uuid.uuid4().hex[:8], tmp_path, partitions=6)  # no worker runs
    try:
        names = p.settings.names
        stuck, limit = 2, LIMIT * p.settings.partitions  # LIMIT records behind on one partition
        producer = Producer(p.settings.kafka())
        for i in range(2 * LIMIT):
            producer.produce(
                names.topic(COMMANDS), key=f"s-{i}".encode(), value=b"{}", partition=stuck
            )
        assert producer.flush(30) == 0
        intake = dataclasses.replace(p.settings, intake_max_backlog=limit).as_principal("intake")
        metrics = declared.Metrics("intake")
        handler = build("intake", intake, metrics, Liveness())
        try:
            deadline = time.monotonic() + 30
            while not handler.holding():
                assert time.monotonic() < deadline, "intake never held for the partition behind"
                time.sleep(0.5)
            assert handler.holding() == {stuck}
            assert metrics.registry.get_sample_value(declared.INPUT_HELD, {"worker": "intake"}) == 1
        finally:
            handler.downstream.close()
    finally:
        p.close()
