"""Pure parts of the console: plan names, masking, what an in-doubt hold waits for, why a lag
status is what it is, and the one gathering loop feeding every stream."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from orderbus.console.live import Live
from orderbus.console.mask import mask, payload
from orderbus.console.plans import plan_id, redrive_id, reset_id
from orderbus.ops.in_doubt import what_next
from orderbus.ops.replay import DlqRun
from topics.catalogue import DLQ_REASON, DLQ_TOPIC
from topics.group_reset import PartitionPlan
from topics.lag import ERR, OK, STALL, STOP, WARN, Sample, judge, partition_status
from topics.redrive import DlqFilter, Letter, ReplayLog, plan_dlq
from workers.coordinator.fold import Tx


def letter(offset: int, reason: str = "schema", count: bytes | None = None) -> Letter:
    headers = ((DLQ_REASON, reason.encode()), (DLQ_TOPIC, b"p.orders.placed.v1"))
    if count is not None:
        headers += (("replay.count", count),)
    return Letter(0, offset, 1000 + offset, b"k", b"{}", headers)


def run_of(letters, f=DlqFilter()) -> DlqRun:
    return DlqRun(
        "p.orders.dlq.v1",
        letters,
        plan_dlq(letters, set(), {"p.orders.placed.v1"}, f),
        ReplayLog(None),
    )


def test_a_plan_is_named_by_what_it_would_do():
    params = {"reason": "", "max_replays": "3"}
    base = redrive_id(params, run_of([letter(1), letter(2)]))
    assert base == redrive_id(dict(params), run_of([letter(1), letter(2)]))
    assert base != redrive_id(params, run_of([letter(1), letter(2), letter(3)]))  # one more arrived
    # one is parked now
    assert base != redrive_id(params, run_of([letter(1), letter(2, count=b"3")]))
    assert base != redrive_id({**params, "max_replays": "4"}, run_of([letter(1), letter(2)]))
    p = PartitionPlan("t", 0, 5, 0, 0, 10)
    assert reset_id({"group": "g"}, [p]) != reset_id({"group": "g"}, [replace(p, current=6)])
    assert plan_id("a", {}, []) != plan_id("b", {}, [])


def test_targets_count_per_reason_and_target():
    run = run_of(
        [letter(1, "schema"), letter(2, "schema"), letter(3, "total"), letter(4, "total", b"9")]
    )
    assert run.targets() == {
        ("schema", "p.orders.placed.v1"): 2,
        ("total", "p.orders.placed.v1"): 1,
    }
    assert [why for _, why in run.plan.parked] == ["replayed 9 times already (max 3)"]


def test_a_viewer_sees_no_customer_field_anywhere():
    doc = {
        "order_id": "A",
        "customer_id": "cust-0042",
        "order": {"customer_id": "cust-7", "items": [{"sku": "s"}]},
    }
    assert mask(doc) == {
        "order_id": "A",
        "customer_id": "cu***",
        "order": {"customer_id": "cu***", "items": [{"sku": "s"}]},
    }
    assert "cust-" not in payload(json.dumps(doc).encode(), viewer=True)
    assert "cust-0042" in payload(json.dumps(doc).encode(), viewer=False)
    assert payload(b"\x00secret", viewer=True) == "(7 bytes, not JSON: hidden from viewers)"


@pytest.mark.parametrize(
    "tx, deadline_in, says",
    [
        (None, None, "has saved nothing of this order"),
        (
            Tx("o", True, ("inventory", "payment"), 0, (("inventory", "yes", None),)),
            4.0,
            "waiting for payment",
        ),
        (
            Tx("o", True, ("inventory", "payment"), 0, (("inventory", "yes", None),)),
            -12.0,
            "past its deadline by 12 s",
        ),
        (
            Tx("o", True, ("inventory", "payment"), 0, (), "abort", "deadline"),
            -1.0,
            "decided abort (deadline)",
        ),
        (Tx("o", True, ("inventory",), 0, (("inventory", "yes", None),)), 3.0, "every vote is in"),
    ],
)
def test_what_happens_next_to_a_hold(tx, deadline_in, says):
    assert says in what_next(tx, "inventory", deadline_in, 10.0)


@pytest.mark.parametrize(
    "samples, members, status, says",
    [
        ([(5, 10), (10, 10)], 1, OK, "caught up"),
        ([(5, 10), (5, 12)], 1, STALL, "does not move"),
        ([(5, 10), (5, 12)], 0, STOP, "no member"),
        ([(5, 10), (6, 12), (7, 14)], 1, WARN, "lag grew"),
        ([(5, 10), (3, 12)], 1, ERR, "went backwards"),
        ([(None, 10)], 1, ERR, "could not be read"),
    ],
)
def test_each_lag_status_says_which_rule_gave_it(samples, members, status, says):
    window = [Sample(i, c, e) for i, (c, e) in enumerate(samples)]
    assert judge(window, members)[0] == status == partition_status(window, members)
    assert says in judge(window, members)[1]


def test_one_gathering_round_feeds_every_stream():
    rounds = []

    def gather() -> dict:
        rounds.append(1)
        return {"n": len(rounds)}

    async def main():
        live = Live(gather, lambda data: {"pane": f"round {data['n']}"}, interval_s=0.01)
        streams = [live.subscribe() for _ in range(5)]
        task = asyncio.create_task(live.run())
        got = [await asyncio.wait_for(q.get(), 5) for q in streams]
        task.cancel()
        live.close()
        return got, [await q.get() for q in streams if not q.empty()]

    got, _ = asyncio.run(main())
    assert got == [{"pane": "round 1"}] * 5  # five streams, one gathering
