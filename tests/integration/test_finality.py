"""A decision is final for ever: an order aborted by its deadline while its votes were late, then
replayed by an operator's offset reset of intake (while the status read model lags), is not
decided again. Nothing is shipped that was not paid."""

from __future__ import annotations

import time
import uuid

import pytest
from pipeline import Pipeline, order

from orderbus.ops.verify import verify
from schemas import codec
from topics.group_reset import Groups, ResetSpec
from topics.lag import log_ends
from topics.read import read

pytestmark = pytest.mark.integration


def decisions(p: Pipeline, order_id: str) -> list[tuple[str, str | None]]:
    out = []
    for msg in read(p.settings.kafka(), p.tx_log_topic, timeout_s=60):
        if msg.key() == order_id.encode():
            event = codec.decode(msg.value(), msg.headers())
            if event.TYPE == "Decided":
                out.append((event.outcome, event.reason))
    return out


def wait_for(what: str, condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not so after {timeout_s:.0f}s: {what}"
        time.sleep(0.3)


def read_to_end(p: Pipeline, worker: str, topic: str, timeout_s: float = 60) -> None:
    """Until `worker`'s group has committed every record of `topic` written so far."""
    group = p.settings.names.group(worker)

    def caught_up() -> bool:
        ends = log_ends(p.settings.kafka(), topic)
        done = Groups(p.settings.kafka()).committed(group)
        return all(done.get((topic, part), (-1, ""))[0] >= end for part, end in ends.items())

    wait_for(f"{group} has read {topic} to its end", caught_up, timeout_s)


def wait_inactive(p: Pipeline, group: str) -> None:
    groups = Groups(p.settings.kafka())
    wait_for(f"{group} has no members", lambda: not groups.members(group), 30)


def test_an_aborted_order_replayed_by_an_offset_reset_stays_aborted(settings, tmp_path):
    # payment dies after each database commit, before its vote is out: it holds in time, but
    # its yes vote reaches tx.log only after the deadline has aborted the order
    p = Pipeline(
        settings,
        "f" + uuid.uuid4().hex[:8],
        tmp_path,
        deadline_ms=3000,
        env={"ORDERBUS_CRASH": "payment:after_db_commit:1"},
    )
    try:
        p.stock(**{"f-sku": 10})
        p.account(**{"f-cust": 10_000})
        p.start()
        status, payment, intake = (p.sup.find(n) for n in ("status", "payment", "intake"))
        p.sup.hold(status)  # the read model lags behind everything below
        p.publish(order("f-late", "f-cust", ("f-sku", 1, 100)))
        held = lambda s: p.sql(s, "SELECT vote, state FROM holds WHERE order_id = 'f-late'")
        wait_for(
            "both holds released after a yes vote",
            lambda: held("inventory") == held("payments") == [("yes", "released")],
            90,
        )
        assert decisions(p, "f-late") == [("abort", "deadline")]

        p.sup.hold(payment)  # back to health: the late yes vote goes out
        del p.sup.env["ORDERBUS_CRASH"]
        p.sup.release(payment)
        p.publish(order("f-ok", "f-cust", ("f-sku", 1, 100)))  # an ordinary committed order
        wait_for("f-ok decided", lambda: decisions(p, "f-ok") == [("commit", None)], 60)
        read_to_end(p, "coordinator", p.tx_log_topic)  # the late vote and the acks with it

        # the operator's documented replay: stop intake, reset it to the earliest offset
        p.sup.hold(intake)
        group = p.settings.names.group("intake")
        wait_inactive(p, group)
        groups = Groups(p.settings.kafka())
        groups.commit(group, groups.plan(group, ResetSpec("to-earliest"), {p.placed: None}))
        p.sup.release(intake)
        read_to_end(p, "intake", p.placed)  # every order begun again, if intake would
        read_to_end(p, "coordinator", p.tx_log_topic)  # and decided again, if the coordinator would

        assert decisions(p, "f-late") == [("abort", "deadline")]
        assert decisions(p, "f-ok") == [("commit", None)]
        p.sup.release(status)
        assert p.wait_final(["f-late", "f-ok"]) == {
            "f-late": ("REJECTED", "deadline"),
            "f-ok": ("SHIPPED", None),
        }
        result = verify(p.settings, wait_s=90)
        assert result["violations"] == [], result["violations"]
        assert p.sql("shipping", "SELECT order_id FROM shipments ORDER BY order_id") == [("f-ok",)]
        assert p.sql("payments", "SELECT captured_cents FROM accounts") == [(100,)]
    finally:
        p.close()


def test_a_vote_whose_begin_never_comes_is_presumed_aborted(settings, tmp_path):
    from confluent_kafka import Producer

    from schemas.events import Voted
    from workers.runtime.signing import signed_as

    p = Pipeline(settings, "f" + uuid.uuid4().hex[:8], tmp_path, deadline_ms=3000)
    try:
        p.start()
        # as if TxBegun had been lost; keyed as every orderbus producer keys
        producer = Producer(p.settings.kafka(**{"partitioner": "murmur2_random"}))
        value, headers = codec.encode(Voted("f-orphan", "payment", "yes", None))
        headers = signed_as(p.settings, "payment", p.tx_log_topic, b"f-orphan", value, headers)
        producer.produce(p.tx_log_topic, key=b"f-orphan", value=value, headers=headers)
        assert producer.flush(30) == 0
        wait_for("the orphan decided", lambda: decisions(p, "f-orphan") != [], 60)
        assert decisions(p, "f-orphan") == [("abort", "deadline")]
    finally:
        p.close()
