"""The order pipeline end to end on the real cluster and databases: business outcomes, exactly
one effect per order whatever is redelivered or republished, dead letters that stop nothing."""

from __future__ import annotations

import json
import time

import pytest
from pipeline import order

from topics.catalogue import DLQ_DETAIL, DLQ_OFFSET, DLQ_REASON, DLQ_TOPIC, DLQ_WORKER

pytestmark = pytest.mark.integration


def test_outcomes_by_reason(pipe):
    pipe.stock(**{"a-sku": 10, "b-sku": 1})
    pipe.account(**{"a-cust": 10_000, "b-cust": 50})
    pipe.publish(order("ok-1", "a-cust", ("a-sku", 2, 100), ("b-sku", 1, 300)))
    pipe.wait_final(["ok-1"])
    pipe.publish(
        order("oos-1", "a-cust", ("a-sku", 1, 100), ("b-sku", 1, 300)),  # b-sku is gone now
        order("poor-1", "b-cust", ("a-sku", 1, 100)),
        order("nosku-1", "a-cust", ("zz-sku", 1, 100)),
        order("nocust-1", "zz-cust", ("a-sku", 1, 100)),
    )
    st = pipe.wait_final(["ok-1", "oos-1", "poor-1", "nosku-1", "nocust-1"])
    assert st["ok-1"] == ("SHIPPED", None)
    assert st["oos-1"] == ("REJECTED", "inventory:out_of_stock")
    assert st["poor-1"] == ("REJECTED", "payment:insufficient_funds")
    assert st["nosku-1"] == ("REJECTED", "inventory:unknown_sku")
    assert st["nocust-1"] == ("REJECTED", "payment:unknown_customer")
    # all-or-nothing: the rejected orders hold and took nothing, in either database
    pipe.wait_settled()
    assert pipe.sql(
        "inventory", "SELECT sku, available, held, committed FROM stock ORDER BY sku"
    ) == [
        ("a-sku", 8, 0, 2),
        ("b-sku", 0, 0, 1),
    ]
    assert pipe.sql(
        "payments",
        "SELECT customer_id, balance_cents, held_cents, captured_cents FROM accounts ORDER BY 1",
    ) == [("a-cust", 9_500, 0, 500), ("b-cust", 50, 0, 0)]
    assert pipe.sql("shipping", "SELECT order_id FROM shipments") == [("ok-1",)]


def test_hot_sku_sells_exactly_its_stock(pipe):
    pipe.stock(**{"hot": 100})
    pipe.account(**{f"hc{i}": 1_000 for i in range(50)})
    ids = [f"hot-{i}" for i in range(1000)]
    pipe.publish(*(order(o, f"hc{i % 50}", ("hot", 1, 10)) for i, o in enumerate(ids)))
    st = pipe.wait_final(ids, timeout_s=120)
    pipe.wait_settled()
    confirmed = [o for o in ids if st[o][0] == "SHIPPED"]
    assert len(confirmed) == 100
    assert {st[o] for o in ids if o not in confirmed} == {("REJECTED", "inventory:out_of_stock")}
    assert pipe.sql(
        "inventory", "SELECT available, held, committed FROM stock WHERE sku = 'hot'"
    ) == [(0, 0, 100)]
    charged = pipe.sql(
        "payments", "SELECT sum(captured_cents) FROM accounts WHERE customer_id LIKE 'hc%%'"
    )
    assert charged == [(1000,)]


def test_balance_covers_exactly_three_of_five(pipe):
    pipe.stock(**{"b3-sku": 100})
    pipe.account(**{"b3-cust": 300})
    ids = [f"b3-{i}" for i in range(5)]
    pipe.publish(*(order(o, "b3-cust", ("b3-sku", 1, 100)) for o in ids))
    st = pipe.wait_final(ids)
    assert sorted(s for s, _ in st.values()) == [
        "REJECTED",
        "REJECTED",
        "SHIPPED",
        "SHIPPED",
        "SHIPPED",
    ]
    pipe.wait_settled()
    assert pipe.sql(
        "payments",
        "SELECT balance_cents, held_cents, captured_cents FROM accounts WHERE customer_id = "
        "'b3-cust'",
    ) == [(0, 0, 300)]


def test_same_order_three_times_is_one_charge_and_a_conflict_is_a_dead_letter(pipe):
    pipe.stock(**{"d-sku": 10})
    pipe.account(**{"d-cust": 1_000})
    same = order("dup-1", "d-cust", ("d-sku", 1, 100))
    pipe.publish(same, same, same)
    pipe.wait_final(["dup-1"])
    pipe.publish(order("dup-1", "d-cust", ("d-sku", 2, 100)))  # same id, other content
    pipe.publish(order("dup-after", "d-cust", ("d-sku", 1, 100)))
    pipe.wait_final(["dup-after"])
    pipe.wait_settled()
    assert pipe.sql(
        "payments", "SELECT captured_cents FROM accounts WHERE customer_id = 'd-cust'"
    ) == [(200,)]
    assert pipe.sql("shipping", "SELECT count(*) FROM shipments WHERE order_id = 'dup-1'") == [(1,)]
    dead = [d for d in pipe.dead_letters() if d["key"] == b"dup-1"]
    assert len(dead) == 1 and dead[0]["headers"][DLQ_REASON] == "rule_violation"
    assert "already used" in dead[0]["headers"][DLQ_DETAIL]


MALFORMED = {
    "undecodable": b"{not json",
    "schema_violation": json.dumps(
        {
            "order_id": "bad-schema",
            "customer_id": "m-cust",
            "items": [{"sku": "m-sku", "quantity": 0, "unit_price_cents": 1}],
            "currency": "EUR",
            "total_cents": 0,
        }
    ).encode(),
    "rule_violation": json.dumps(
        {
            "order_id": "bad-total",
            "customer_id": "m-cust",
            "items": [{"sku": "m-sku", "quantity": 1, "unit_price_cents": 5}],
            "currency": "EUR",
            "total_cents": 6,
        }
    ).encode(),
}


def test_malformed_orders_are_dead_letters_and_the_partition_keeps_flowing(pipe):
    pipe.stock(**{"m-sku": 10})
    pipe.account(**{"m-cust": 1_000})
    key = b"same-key"  # everything on one partition, bad messages before the good one
    for value in MALFORMED.values():
        pipe.publisher.publish_raw(key, value)
    pipe.publisher.publish_raw(key, b"{}", headers=[("type", b"OrderPlaced"), ("version", b"9")])
    assert pipe.publisher.flush(30) == 0
    pipe.publish(order("m-good", "m-cust", ("m-sku", 1, 5)))
    assert pipe.wait_final(["m-good"])["m-good"][0] == "SHIPPED"
    dead = [d for d in pipe.dead_letters() if d["key"] == key]
    reasons = sorted(d["headers"][DLQ_REASON] for d in dead)
    assert reasons == sorted([*MALFORMED, "unknown_version"])
    for d in dead:
        h = d["headers"]
        assert h[DLQ_TOPIC].endswith("orders.placed.v1") and h[DLQ_WORKER] == "intake"
        assert int(h[DLQ_OFFSET]) >= 0 and h[DLQ_DETAIL]
    assert {d["value"] for d in dead} >= set(MALFORMED.values())  # original bytes kept


def test_participant_stopped_past_the_deadline_aborts_and_releases(pipe):
    pipe.stock(**{"late-sku": 5})
    pipe.account(**{"late-cust": 1_000})
    payment = pipe.sup.find("payment")
    pipe.sup.hold(payment)
    try:
        pipe.publish(order("late-1", "late-cust", ("late-sku", 2, 100)))
        st = pipe.wait_final(["late-1"], timeout_s=30)
        assert st["late-1"] == ("REJECTED", "deadline")
        # inventory voted yes and held; the abort released it
        deadline = time.monotonic() + 20
        while pipe.sql("inventory", "SELECT state FROM holds WHERE order_id = 'late-1'") != [
            ("released",)
        ]:
            assert time.monotonic() < deadline, "inventory hold was not released"
            time.sleep(0.3)
    finally:
        pipe.sup.release(payment)
    # the payment worker comes back: its late Prepare holds and the abort behind it releases
    # the money again, and is acked
    deadline = time.monotonic() + 60
    while pipe.sql("payments", "SELECT state FROM holds WHERE order_id = 'late-1'") != [
        ("released",)
    ]:
        assert time.monotonic() < deadline, "payment did not process the late Prepare"
        time.sleep(0.3)
    assert pipe.sql(
        "payments", "SELECT balance_cents, held_cents FROM accounts WHERE customer_id = 'late-cust'"
    ) == [(1_000, 0)]
    assert pipe.statuses(["late-1"])["late-1"] == ("REJECTED", "deadline")
