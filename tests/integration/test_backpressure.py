"""Back-pressure: while a participant is down, intake begins no more transactions than the
limit allows; the rest wait in orders.placed (no deadline runs there), intake is not taken for
stalled, and every order goes through once the participant is back."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient
from pipeline import Pipeline, order

from topics.catalogue import PARTITIONS
from topics.lag import backlog, group_reader

pytestmark = pytest.mark.integration

LIMIT = 20  # records behind in a downstream group before intake holds
ORDERS, RATE = 100, 10.0
HELD_S = 45  # longer than the loop's stall limit (30 s): holding is no stall
SETTLE_S = 5  # after the last order is published, before the count that must not move


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
            return p.sql("orders", "SELECT count(*) FROM orders WHERE order_id = ANY(%s)", (ids,))[0][0]

        # by now every look has seen inventory's backlog; how many slipped through before the
        # first did depends on how long a look takes on this machine (a few round trips)
        time.sleep(SETTLE_S)
        begun_then = begun()
        time.sleep(HELD_S - SETTLE_S - ORDERS / RATE)
        begun_now = begun()
        reader = group_reader(p.settings.kafka(), p.settings.names.group("intake"))
        waiting = backlog(AdminClient(p.settings.kafka()), reader, p.placed, PARTITIONS)
        intake = p.sup.find("intake")
        print(
            f"\nlimit {LIMIT}: {begun_now} of {ORDERS} orders begun while inventory was away "
            f"({begun_then} {HELD_S - SETTLE_S - ORDERS / RATE:.0f} s earlier), {waiting} waiting at "
            f"intake, intake restarts {intake.restarts}"
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
