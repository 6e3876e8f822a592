"""A participant cannot vote for another. With the payment worker stopped, a client speaking as
the inventory principal (allowed to write tx.log, holding inventory's signing key) writes
payment's yes vote and a commit decision for an order: the order is still aborted by its
deadline, nothing is shipped or charged, and each forgery is dead-lettered as `forged`."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer
from pipeline import Pipeline, order

from orderbus.ops.verify import verify
from schemas import codec
from schemas.errors import DeadLetter
from schemas.events import Abort, Commit, Decided, StatusChanged, TxBegun, Voted
from topics.catalogue import COMMANDS, DLQ_REASON, DLQ_TOPIC
from topics.partitioner import partition_for
from topics.read import read
from workers.runtime.signing import Signer, Verifier

pytestmark = pytest.mark.integration
PARTITIONS = 6  # a pipeline with another partition to misplace a vote on


def tx_log_events(p: Pipeline, order_id: str, verifier: Verifier | None = None) -> list:
    """The order's tx.log events; with a verifier, only those their authors signed."""
    out = []
    for msg in read(p.settings.kafka(), p.tx_log_topic, timeout_s=60):
        if msg.key() == order_id.encode():
            if verifier is None:
                out.append(codec.decode(msg.value(), msg.headers()))
            else:
                try:
                    out.append(verifier.decode(msg))
                except DeadLetter:
                    pass
    return out


def test_inventory_cannot_vote_for_payment_nor_decide(settings, tmp_path):
    p = Pipeline(settings, "g" + uuid.uuid4().hex[:8], tmp_path, deadline_ms=3000)
    oid = "g-1"
    try:
        p.stock(**{"g-sku": 10})
        p.account(**{"g-cust": 10_000})
        p.start()
        p.sup.hold(p.sup.find("payment"))
        p.publish(order(oid, "g-cust", ("g-sku", 1, 500)))
        deadline = time.monotonic() + 60
        while not any(e.TYPE == "Voted" for e in tx_log_events(p, oid)):
            assert time.monotonic() < deadline, "inventory never voted"
            time.sleep(0.3)

        # what a compromised inventory service can write: its principal may write tx.log, and
        # it holds its own signing key, not payment's nor the coordinator's
        as_inventory = p.settings.as_principal("inventory")
        key = as_inventory.signing_key("inventory")
        forgeries = [
            (Voted(oid, "payment", "yes", None), "payment"),  # claims payment
            (Voted(oid, "payment", "yes", None), "inventory"),  # honest signer
            (Decided(oid, "commit", None), "coordinator"),
        ]  # claims coordinator
        producer = Producer(as_inventory.kafka(partitioner="murmur2_random"))
        delivered = []
        for event, claimed in forgeries:
            value, headers = codec.encode(event)
            headers = Signer(claimed, key, (p.tx_log_topic,)).headers(
                p.tx_log_topic, oid.encode(), value, headers
            )
            producer.produce(
                p.tx_log_topic,
                key=oid.encode(),
                value=value,
                headers=headers,
                on_delivery=lambda err, _: delivered.append(err),
            )
        assert producer.flush(30) == 0 and delivered == [None] * 3, delivered  # the ACL let it

        status = p.wait_final([oid], timeout_s=90)[oid]
        assert status == ("REJECTED", "deadline")
        genuine = [e for e in tx_log_events(p, oid, Verifier.of(p.settings)) if e.TYPE == "Decided"]
        assert [(d.outcome, d.reason) for d in genuine] == [("abort", "deadline")]
        assert (
            p.sql("shipping", "SELECT count(*) FROM shipments WHERE order_id = %s", (oid,))[0][0]
            == 0
        )
        dead = [d for d in p.dead_letters() if d["key"] == oid.encode()]
        assert [(d["headers"][DLQ_REASON], d["headers"][DLQ_TOPIC]) for d in dead] == [
            ("forged", p.tx_log_topic)
        ] * 3

        p.sup.release(p.sup.find("payment"))
        result = verify(p.settings, wait_s=90)
        assert result["violations"] == [], result["violations"]
        assert (
            p.sql(
                "payments",
                "SELECT captured_cents FROM accounts WHERE customer_id = %s",
                ("g-cust",),
            )[0][0]
            == 0
        )
    finally:
        p.close()


def test_a_vote_on_another_partition_decides_nothing(settings, tmp_path):
    """Inventory's own, genuinely signed yes vote placed on a tx.log partition that is not its
    order's: the owner of that partition must not fold it. Otherwise it finds the order in the
    coordinator's store (payment voted yes there), decides commit and ships, while the order's
    own partition aborts it at its deadline and payment releases its hold."""
    p = Pipeline(
        settings, "x" + uuid.uuid4().hex[:8], tmp_path, deadline_ms=4000, partitions=PARTITIONS
    )
    oid = "x-1"
    try:
        p.stock(**{"x-sku": 10})
        p.account(**{"x-cust": 10_000})
        p.start()
        p.sup.hold(p.sup.find("inventory"))  # the test speaks as inventory
        p.publish(order(oid, "x-cust", ("x-sku", 1, 500)))
        deadline = time.monotonic() + 60
        while not any(e.TYPE == "Voted" for e in tx_log_events(p, oid)):
            assert time.monotonic() < deadline, "payment never voted"
            time.sleep(0.3)
        time.sleep(2.5)  # the coordinator saves the open order (about once a second)

        as_inventory = p.settings.as_principal("inventory")
        value, headers = codec.encode(Voted(oid, "inventory", "yes", None))
        headers = Signer(
            "inventory", as_inventory.signing_key("inventory"), (p.tx_log_topic,)
        ).headers(p.tx_log_topic, oid.encode(), value, headers)
        home = partition_for(oid.encode(), PARTITIONS)
        producer = Producer(as_inventory.kafka())
        producer.produce(
            p.tx_log_topic,
            key=oid.encode(),
            value=value,
            headers=headers,
            partition=(home + 1) % PARTITIONS,
        )
        assert producer.flush(30) == 0

        assert p.wait_final([oid], timeout_s=90)[oid] == ("REJECTED", "deadline")
        time.sleep(3)  # a decision from the other partition would be on tx.log by now
        decided = [e for e in tx_log_events(p, oid, Verifier.of(p.settings)) if e.TYPE == "Decided"]
        assert [(d.outcome, d.reason) for d in decided] == [("abort", "deadline")]
        assert (
            p.sql("shipping", "SELECT count(*) FROM shipments WHERE order_id = %s", (oid,))[0][0]
            == 0
        )
        assert p.statuses([oid])[oid][0] == "REJECTED"
        dead = [d for d in p.dead_letters() if d["key"] == oid.encode()]
        assert [(d["headers"][DLQ_REASON], d["headers"][DLQ_TOPIC]) for d in dead] == [
            ("misplaced", p.tx_log_topic)
        ]
    finally:
        p.close()


def test_intake_cannot_decide(settings, tmp_path):
    """What intake's credentials and key can write, and none of it decides an order: a CONFIRMED
    status for an order the pipeline rejected is refused at the broker (intake writes no status
    record); a Commit and an Abort to the participants for an order the coordinator has not
    decided are dead-lettered as forged by both participants; a TxBegun that names inventory only
    as breaking a rule; and each order ends as the coordinator decides it."""
    p = Pipeline(settings, "i" + uuid.uuid4().hex[:8], tmp_path, deadline_ms=4000)
    rejected, undecided, lone = "i-rejected", "i-undecided", "i-lone"
    try:
        p.stock(**{"i-sku": 3})
        p.account(**{"i-cust": 100_000})
        p.start()
        as_intake = p.settings.as_principal("intake")
        key = as_intake.signing_key("intake")
        commands = p.settings.names.topic(COMMANDS)  # read by both participants
        signed = (p.tx_log_topic, p.status_topic, commands)
        producer = Producer(as_intake.kafka(partitioner="murmur2_random"))

        def write(topic, event):
            """Writes as intake; the broker's refusal, if it refuses."""
            value, headers = codec.encode(event)
            headers = Signer("intake", key, signed).headers(
                topic, event.order_id.encode(), value, headers
            )
            refused = []
            producer.produce(
                topic,
                key=event.order_id.encode(),
                value=value,
                headers=headers,
                on_delivery=lambda err, _: refused.append(err) if err is not None else None,
            )
            assert producer.flush(30) == 0
            return refused[0].name() if refused else None

        def wait_votes(oid, n):
            deadline = time.monotonic() + 60
            while len([e for e in tx_log_events(p, oid) if e.TYPE == "Voted"]) < n:
                assert time.monotonic() < deadline, f"{oid}: fewer than {n} votes"
                time.sleep(0.3)

        # a rejected order confirmed
        p.publish(order(rejected, "i-cust", ("i-sku", 5, 100)))  # out of stock
        assert p.wait_final([rejected])[rejected] == ("REJECTED", "inventory:out_of_stock")
        # intake writes no status record (an order's PENDING is a row it writes): refused at the
        # broker, and signed by intake it would be a forgery to shipping and status too
        confirmed = StatusChanged(rejected, "CONFIRMED", None, int(time.time() * 1000))
        assert write(p.status_topic, confirmed) == "TOPIC_AUTHORIZATION_FAILED"

        # an undecided order committed at inventory and aborted at payment
        p.sup.hold(p.sup.find("coordinator"))
        p.publish(order(undecided, "i-cust", ("i-sku", 1, 100)))
        wait_votes(undecided, 2)
        assert write(commands, Commit(undecided)) is None
        assert write(commands, Abort(undecided, "deadline")) is None
        time.sleep(5)  # what the forgeries would do is done by now
        for db in ("inventory", "payments"):
            assert p.sql(db, "SELECT state FROM holds WHERE order_id = %s", (undecided,)) == [
                ("held",)
            ], db
        p.sup.release(p.sup.find("coordinator"))
        assert p.wait_final([undecided], timeout_s=90)[undecided] == ("SHIPPED", None)

        # an order begun for inventory alone, while payment cannot vote
        p.sup.hold(p.sup.find("payment"))
        assert (
            write(p.tx_log_topic, TxBegun(lone, ("inventory",), int(time.time() * 1000) + 4000))
            is None
        )
        p.publish(order(lone, "i-cust", ("i-sku", 1, 100)))
        assert p.wait_final([lone], timeout_s=90)[lone] == ("REJECTED", "deadline")
        p.sup.release(p.sup.find("payment"))

        assert p.statuses([rejected])[rejected][0] == "REJECTED"
        assert p.sql("shipping", "SELECT order_id FROM shipments ORDER BY order_id") == [
            (undecided,)
        ]
        for oid, outcome in ((rejected, "abort"), (undecided, "commit"), (lone, "abort")):
            genuine = [
                e for e in tx_log_events(p, oid, Verifier.of(p.settings)) if e.TYPE == "Decided"
            ]
            assert {d.outcome for d in genuine} == {outcome}, oid
        dead = sorted(
            (d["key"].decode(), d["headers"][DLQ_REASON], d["headers"][DLQ_TOPIC])
            for d in p.dead_letters()
            if d["key"] in (rejected.encode(), undecided.encode(), lone.encode())
        )
        assert dead == sorted(
            [
                *[(undecided, "forged", commands)] * 4,  # each read by inventory and by payment
                (lone, "rule_violation", p.tx_log_topic),
            ]
        )
        result = verify(p.settings, wait_s=90)
        assert result["violations"] == [], result["violations"]
    finally:
        p.close()
