"""The chaos plan and the recovery/gap measurements: pure functions over seeds and timelines."""

from __future__ import annotations

import math
import time

import pytest

from orderbus.lab.chaos.measure import (
    GRACE_S,
    Acks,
    already_stalled,
    fault_recovery,
    max_gap,
    partition_stall,
    per_second,
    summary_by_kind,
)
from orderbus.lab.chaos.plan import (
    HOLD_S,
    KINDS,
    MIN_GAP_S,
    SETTLE_S,
    TAIL_S,
    WARMUP_S,
    duration_for_all,
    plan,
)
from orderbus.lab.stats import percentile

# -- the plan -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 123456])
def test_same_seed_same_plan(seed):
    assert plan(KINDS, 300, seed) == plan(KINDS, 300, seed)


def test_other_seed_other_plan():
    assert plan(KINDS, 300, 1) != plan(KINDS, 300, 2)


def test_plan_does_not_depend_on_the_global_random():
    import random

    random.seed(1)
    a = plan(KINDS, 300, 5)
    random.seed(2)
    assert plan(KINDS, 300, 5) == a


def test_plan_ignores_the_order_and_repeats_of_the_kinds():
    assert plan(["pg-restart", "worker-kill", "pg-restart"], 200, 3) == plan(
        ["worker-kill", "pg-restart"], 200, 3
    )


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("duration", [60, 94, 150, 600])
def test_faults_never_overlap_and_keep_their_distance(seed, duration):
    faults = plan(KINDS, duration, seed)
    for a, b in zip(faults, faults[1:]):
        assert b.at_s - (a.at_s + a.hold_s + SETTLE_S[a.kind]) >= MIN_GAP_S - 0.11  # rounding
    for f in faults:
        assert f.at_s >= WARMUP_S
        assert f.at_s + f.hold_s + SETTLE_S[f.kind] <= duration - TAIL_S + 0.11
        lo, hi = HOLD_S[f.kind]
        assert lo <= f.hold_s <= hi
        assert 0 <= f.pick < 1
        assert (f.aim != "") == (f.kind == "broker-kill")


@pytest.mark.parametrize("seed", range(50))
def test_every_kind_appears_when_the_duration_allows(seed):
    faults = plan(KINDS, duration_for_all(KINDS), seed)
    assert {f.kind for f in faults} == set(KINDS)
    # the first round has each kind once, before any repeats
    assert sorted(f.kind for f in faults[: len(KINDS)]) == sorted(KINDS)


@pytest.mark.parametrize(
    "kinds", [["worker-kill"], ["broker-kill", "pg-restart"], ["worker-pause", "broker-pause"]]
)
def test_a_subset_of_kinds_is_all_there_is(kinds):
    faults = plan(kinds, 600, 9)
    assert {f.kind for f in faults} == set(kinds)
    assert len(faults) > len(kinds)  # ten minutes: kinds repeat


def test_a_long_run_has_many_faults_of_every_kind():
    faults = plan(KINDS, 1200, 11)
    assert len(faults) >= 20
    assert all(sum(f.kind == k for f in faults) >= 2 for k in KINDS)


def test_too_short_a_run_has_no_faults():
    assert plan(KINDS, WARMUP_S + TAIL_S, 1) == []
    assert plan([], 600, 1) == []


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="disk-full"):
        plan(["worker-kill", "disk-full"], 100, 1)


# -- recovery of one partition ------------------------------------------------------------------

EVERY_TENTH = [i / 10 for i in range(0, 300)]  # a decision each 0.1 s for 30 s


def test_a_partition_that_keeps_deciding_did_not_stall():
    assert partition_stall(EVERY_TENTH, at=10.0, until=12.0, end=30.0) is None


def test_a_stall_starting_at_the_fault_ends_at_the_next_decision():
    times = [t for t in EVERY_TENTH if not 10.0 < t < 16.5]
    assert partition_stall(times, at=10.0, until=12.0, end=30.0) == pytest.approx(6.5)


def test_a_stall_starting_a_little_after_the_fault_counts_from_the_fault():
    # in-flight orders still decided for 0.4 s after an intake instance died
    times = [t for t in EVERY_TENTH if not 10.4 < t < 17.0]
    assert partition_stall(times, at=10.0, until=12.0, end=30.0) == pytest.approx(7.0)


def test_a_stall_that_begins_after_the_window_is_not_the_faults():
    times = [t for t in EVERY_TENTH if not 13.0 < t < 20.0]
    assert partition_stall(times, at=10.0, until=12.0, end=30.0) is None


def test_a_gap_no_longer_than_the_threshold_is_not_a_stall():
    times = [t for t in EVERY_TENTH if not 10.0 < t < 11.0]
    assert partition_stall(times, at=10.0, until=12.0, end=30.0, stall_s=1.0) is None


def test_a_partition_that_never_decides_again_is_infinite():
    times = [t for t in EVERY_TENTH if t <= 10.0]
    assert partition_stall(times, at=10.0, until=12.0, end=30.0) == math.inf


def test_a_partition_with_no_decisions_at_all_stalled():
    assert partition_stall([], at=10.0, until=12.0, end=30.0) == math.inf
    assert partition_stall([], at=10.0, until=12.0, end=10.5) is None  # too soon to say


# -- recovery of a fault over six partitions ------------------------------------------------------


def timeline(stalls: dict[int, tuple[float, float]], partitions: int = 6) -> dict[int, list]:
    return {
        p: [t for t in EVERY_TENTH if not (p in stalls and stalls[p][0] < t < stalls[p][1])]
        for p in range(partitions)
    }


@pytest.mark.parametrize(
    "stalls, expected, hit",
    [
        ({}, 0.0, []),  # e.g. a shipping instance killed
        ({2: (10.0, 16.9)}, 6.9, [2]),  # one coordinator's partition moved
        ({1: (10.0, 13.0), 4: (10.2, 17.5)}, 7.5, [1, 4]),  # the last one to resume counts
        ({p: (10.0, 12.4) for p in range(6)}, 2.4, [0, 1, 2, 3, 4, 5]),  # PostgreSQL restart
        ({3: (10.0, 99.0)}, None, [3]),  # never recovered
    ],
)
def test_fault_recovery(stalls, expected, hit):
    recovery, stalled, before = fault_recovery(
        timeline(stalls), at=10.0, until=10.0 + GRACE_S, end=30.0
    )
    assert stalled == hit
    assert before == []
    assert recovery == (None if expected is None else pytest.approx(expected))


def test_fault_recovery_attributes_stalls_while_the_fault_is_held():
    # a broker paused 4 s: its partitions stall from 11 s (a batch was in hand) until 14.6 s
    recovery, stalled, before = fault_recovery(
        timeline({5: (11.0, 14.6)}), at=10.0, until=14.0 + GRACE_S, end=30.0
    )
    assert (recovery, stalled, before) == (pytest.approx(4.6), [5], [])


def test_a_partition_stalled_before_the_fault_is_not_its_doing():
    # partition 2 halted at 5 s (a dead worker) and came back at 25 s; a fault at 10 s stalls 4
    decisions = timeline({2: (5.0, 25.0), 4: (10.0, 13.0)})
    recovery, stalled, before = fault_recovery(decisions, at=10.0, until=12.0, end=30.0)
    assert (recovery, stalled, before) == (pytest.approx(3.0), [4], [2])
    assert fault_recovery(timeline({p: (5.0, 25.0) for p in range(6)}), 10.0, 12.0, 30.0) == (
        0.0,
        [],
        [0, 1, 2, 3, 4, 5],
    )


@pytest.mark.parametrize(
    "times, at, expected",
    [
        ([9.5], 10.0, False),
        ([8.5], 10.0, True),
        ([], 10.0, True),
        ([10.0, 11.0], 10.0, False),
        ([10.5], 10.0, True),
    ],
)
def test_already_stalled(times, at, expected):
    assert already_stalled(times, at, stall_s=1.0) is expected


# -- the longest gap and the rate -----------------------------------------------------------------


def test_max_gap_finds_the_longest_silence():
    times = [t for t in EVERY_TENTH if not 12.0 < t < 15.5] + [0.05]
    assert max_gap(times, 0.0, 30.0, 31.0) == (pytest.approx(3.5), pytest.approx(12.0))


def test_max_gap_counts_from_the_load_start():
    assert max_gap([2.5, 2.6, 2.7], 0.0, 3.0, 3.0) == (pytest.approx(2.5), 0.0)


def test_max_gap_ignores_silence_after_the_load_stopped():
    # orders in flight are decided for a moment after the load stops; then silence, not a gap
    times = [t for t in EVERY_TENTH if t < 20.5] + [29.0]
    assert max_gap(times, 0.0, 20.0, 30.0)[0] == pytest.approx(0.1)


def test_max_gap_still_open_when_the_load_stops_runs_to_the_next_decision():
    times = [t for t in EVERY_TENTH if t < 18.0] + [25.0]
    assert max_gap(times, 0.0, 20.0, 30.0) == (pytest.approx(7.1), pytest.approx(17.9))
    assert max_gap([t for t in EVERY_TENTH if t < 18.0], 0.0, 20.0, 22.0)[0] == pytest.approx(4.1)


def test_per_second_buckets():
    assert per_second([0.0, 0.5, 0.99, 1.0, 2.5, 3.2, -0.5], 0.0, 3.0) == [3, 1, 1]
    assert per_second(EVERY_TENTH, 0.0, 30.0) == [10] * 30
    assert per_second([], 0.0, 0.0) == []


def test_percentile_and_summary():
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    faults = [
        {"kind": "pg-restart", "recovery_s": 2.0, "publish_stall_s": 0.1},
        {"kind": "pg-restart", "recovery_s": 4.0, "publish_stall_s": 0.3},
        {"kind": "pg-restart", "recovery_s": 3.0, "publish_stall_s": None},
        {"kind": "worker-kill", "recovery_s": None, "publish_stall_s": None},
    ]
    assert summary_by_kind(faults) == {
        "pg-restart": {
            "faults": 3,
            "p50_s": 3.0,
            "max_s": 4.0,
            "unrecovered": 0,
            "publish_stall_max_s": 0.3,
        },
        "worker-kill": {
            "faults": 1,
            "p50_s": None,
            "max_s": None,
            "unrecovered": 1,
            "publish_stall_max_s": None,
        },
    }


def test_acks_report_the_longest_wait_of_what_was_sent_during_a_fault():
    class Msg:
        def __init__(self, latency):
            self._latency = latency

        def latency(self):
            return self._latency

    acks = Acks(time.monotonic() - 10.0)  # "now" is 10 s into the run
    acks.delivered(None, Msg(7.5))  # sent at ~2.5 s, in flight until ~10 s
    acks.delivered(None, Msg(0.2))  # sent at ~9.8 s
    acks.delivered("failed", Msg(None))  # not acknowledged: no wait to report
    assert acks.longest_wait(2.0, 3.0) == pytest.approx(7.5, abs=0.01)
    assert acks.longest_wait(5.0, 6.0) == pytest.approx(7.5, abs=0.01)  # in flight then
    assert acks.longest_wait(9.9, 10.0) == pytest.approx(7.5, abs=0.01)
    assert acks.longest_wait(0.0, 1.0) is None
