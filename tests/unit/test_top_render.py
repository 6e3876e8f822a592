"""`orderbus top` draws a frame: every number and status shows, and a missing figure says why."""

from __future__ import annotations

import math

import pytest

from orderbus.ops.top import to_text
from orderbus.ops.top_frame import Frame, GroupRow, StageRow, StuckRow
from orderbus.ops.top_gather import p99, parse_stage_buckets
from workers.runtime.metrics import DECISIONS
from workers.tracker.metrics import STAGE_LATENCY

FULL = Frame(
    taken_at=1_700_000_000.0,
    pipeline="t1a2b3c",
    window_s=2.0,
    groups=(
        GroupRow("t1a2b3c.orderbus.coordinator", "STALL", 4321, 2, 12.5),
        GroupRow("t1a2b3c.orderbus.intake", "WARN", 77, 1, None),
        GroupRow("t1a2b3c.orderbus.status", "OK", 0, 1, 0.0),
    ),
    under_replicated=3,
    counts={"placed": 1500, "pending": 12, "confirmed": 1234, "rejected": 254, "shipped": 1201},
    rates={"placed": 101.5, "confirmed": 88.25, "rejected": 13.0, "shipped": 86.0},
    in_doubt=7,
    dead_letters=42,
    dead_letters_exact=False,
    dead_letters_by_reason={"schema_violation": 40, "undecodable": 2},
    stages=(
        StageRow("voted_inventory", 90, 48.0, 180.0),
        StageRow("end_to_end", 0, None, math.inf),
    ),
    stages_source="127.0.0.1:9406",
    stuck=(StuckRow("ORD-000917", "voted_payment", "decided", 31.4),),
    stuck_total=5,
    snapshot_age_s=3.0,
)

DEGRADED = Frame(
    taken_at=1_700_000_000.0,
    pipeline="main",
    groups_why="Kafka at 127.0.0.1:19092: cannot list consumer groups: timed out",
    counts_why="orders database: connection refused",
    rates_why="orders database: connection refused",
    in_doubt_why="inventory database: connection refused",
    dead_letters_why="orders.dlq.v1: broker down",
    stages_why="tracker not running (no tracker metrics on 127.0.0.1:9400-9420)",
    stuck_why="no snapshot in /x/tracker: is the tracker running?",
)


def test_full_frame_shows_every_number_and_status():
    text = to_text(FULL)
    for expected in (
        "t1a2b3c.orderbus.coordinator",
        "STALL",
        "4321",
        "12.5s",
        "WARN",
        "OK",
        "under-replicated partitions 3",
        "1500",
        "1234",
        "254",
        "1201",
        "101.5",
        "88.2",
        "13.0",
        "86.0",
        "last 2.0s",
        "in doubt 7",
        "dead letters 42 (at least): schema_violation 40",
        "undecodable 2",
        "voted_inventory",
        "48 ms",
        "180 ms",
        "> 60,000 ms",
        "127.0.0.1:9406",
        "ORD-000917",
        "voted_payment",
        "31.4s",
        "5 more than 5s",
        "... and 4 more",
    ):
        assert expected in text, expected
    assert "n/a" not in text
    assert "\x1b[" not in text  # plain text: no colour, no cursor movement


def test_first_frame_says_why_rates_are_missing():
    text = to_text(
        Frame(
            taken_at=0.0,
            pipeline="main",
            counts=FULL.counts,
            rates_why="first sample; rates need two counts",
            groups=(),
            stuck=(),
        )
    )
    assert "1234" in text
    assert "rates n/a: first sample; rates need two counts" in text
    assert "no consumer group of this pipeline" in text
    assert "STUCK ORDERS (0 more than 5s past their deadline)" in text


def test_a_stuck_list_that_cannot_be_trusted_says_so():
    why = "the tracker's group has no member and 30 records unread"
    frame = Frame(
        taken_at=0.0,
        pipeline="main",
        stuck=(),
        stuck_left_out_final=3,
        stuck_untrusted_because=(why,),
    )
    text = to_text(frame)
    assert "STUCK ORDERS (0 more than 5s past their deadline, 3 final left out)" in text
    assert f"this list cannot be trusted: {why}" in text
    assert "cannot be trusted" not in to_text(FULL)


def test_degraded_frame_says_why_for_each_missing_figure():
    text = to_text(DEGRADED, width=200)
    for why in (
        DEGRADED.groups_why,
        DEGRADED.counts_why,
        DEGRADED.in_doubt_why,
        DEGRADED.dead_letters_why,
        DEGRADED.stages_why,
        DEGRADED.stuck_why,
    ):
        assert f"n/a: {why}" in text, why
    assert "tracker not running" in text


@pytest.mark.parametrize(
    "buckets, expected",
    [
        ({}, None),
        ({10.0: 0, math.inf: 0}, None),
        ({10.0: 100, 20.0: 100, math.inf: 100}, 9.9),  # all in the first bucket
        ({10.0: 50, 20.0: 100, math.inf: 100}, 19.8),  # 99th of 100 is 49/50 into (10, 20]
        ({10.0: 50, 20.0: 90, math.inf: 100}, math.inf),  # above the largest bound
    ],
)
def test_p99_interpolates_like_histogram_quantile(buckets, expected):
    got = p99(buckets)
    assert (
        got == expected
        if expected is None or math.isinf(expected)
        else got == pytest.approx(expected)
    )


def test_parse_stage_buckets_reads_the_tracker_histogram_only():
    h = STAGE_LATENCY
    page = f"""# HELP {h} Time
# TYPE {h} histogram
{h}_bucket{{le="10.0",stage="decided"}} 3.0
{h}_bucket{{le="+Inf",stage="decided"}} 4.0
{h}_count{{stage="decided"}} 4.0
{h}_sum{{stage="decided"}} 70.0
"""
    assert parse_stage_buckets(page) == {"decided": {10.0: 3.0, math.inf: 4.0}}
    worker = f'# TYPE {DECISIONS} counter\n{DECISIONS}{{outcome="commit",reason=""}} 5.0\n'
    assert parse_stage_buckets(worker) is None
