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
from schemas.events import Decided, Voted
from topics.catalogue import DLQ_REASON, DLQ_TOPIC
from topics.read import read
from workers.runtime.signing import Signer, Verifier

pytestmark = pytest.mark.integration


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
        assert p.sql("shipping", "SELECT count(*) FROM shipments WHERE order_id = %s", (oid,))[0][0] == 0
        dead = [d for d in p.dead_letters() if d["key"] == oid.encode()]
        assert [(d["headers"][DLQ_REASON], d["headers"][DLQ_TOPIC]) for d in dead] == [
            ("forged", p.tx_log_topic)
        ] * 3

        p.sup.release(p.sup.find("payment"))
        result = verify(p.settings, wait_s=90)
        assert result["violations"] == [], result["violations"]
        assert (
            p.sql("payments", "SELECT captured_cents FROM accounts WHERE customer_id = %s", ("g-cust",))[0][0]
            == 0
        )
    finally:
        p.close()
