"""The tracker's pure core: events to stages, the first-seen-wins fold, latencies, stuck orders."""

from __future__ import annotations

import pytest

from schemas.events import (
    Acked,
    DeadlinePassed,
    Decided,
    Line,
    OrderPlaced,
    StatusChanged,
    TxBegun,
    Voted,
)
from workers.tracker.stages import (
    Observation,
    OrderStages,
    advance,
    observe,
    stuck,
    waiting_for,
    window_counts,
)

PLACED = OrderPlaced("o1", "c1", (Line("s", 2, 250),), "EUR", 500)


@pytest.mark.parametrize(
    "event, expected",
    [
        (PLACED, Observation("o1", "placed", 7, total_cents=500, currency="EUR")),
        (
            TxBegun("o1", ("inventory", "payment"), 10_000),
            Observation("o1", "begun", 7, deadline_ms=10_000),
        ),
        (Voted("o1", "inventory", "yes", None), Observation("o1", "voted_inventory", 7)),
        (
            Voted("o1", "payment", "no", "insufficient_funds"),
            Observation("o1", "voted_payment", 7, reason="insufficient_funds"),
        ),
        (
            Decided("o1", "abort", "deadline"),
            Observation("o1", "decided", 7, outcome="abort", reason="deadline"),
        ),
        (
            StatusChanged("o1", "CONFIRMED", None, 1),
            Observation("o1", "decided", 7, outcome="commit"),
        ),
        (StatusChanged("o1", "SHIPPED", None, 1), Observation("o1", "shipped", 7)),
        (
            StatusChanged("o1", "REJECTED", "inventory:out_of_stock", 1),
            Observation("o1", "rejected", 7, reason="inventory:out_of_stock"),
        ),
        (StatusChanged("o1", "PENDING", None, 1), None),
        (Acked("o1", "payment", "commit"), None),
        (DeadlinePassed("o1", 5), None),
    ],
)
def test_observe(event, expected):
    assert observe(event, 7) == expected


def fold(*observations):
    state, reached = None, []
    for obs in observations:
        state, r = advance(state, obs)
        reached.append(r)
    return state, reached


def o(stage, at, **kw):
    return Observation("o1", stage, at, **kw)


HAPPY = (
    o("placed", 100, total_cents=500, currency="EUR"),
    o("begun", 110, deadline_ms=4_110),
    o("voted_inventory", 130),
    o("voted_payment", 125),
    o("decided", 140, outcome="commit"),
    o("shipped", 170),
)


@pytest.mark.parametrize(
    "observations, latencies",
    [
        (
            HAPPY,
            [
                ("begun", 10),
                ("voted_inventory", 20),
                ("voted_payment", 15),
                ("decided", 10),
                ("shipped", 30),
                ("end_to_end", 70),
            ],
        ),
        # a no vote: the decision follows the last vote seen
        (
            (
                o("placed", 0),
                o("begun", 5, deadline_ms=4_005),
                o("voted_payment", 8, reason="insufficient_funds"),
                o("decided", 9, outcome="abort"),
                o("rejected", 20, reason="payment:insufficient_funds"),
            ),
            [
                ("begun", 5),
                ("voted_payment", 3),
                ("decided", 1),
                ("rejected", 11),
                ("end_to_end", 20),
            ],
        ),
        # no vote at all (a participant down): decided by the deadline, measured from begun
        (
            (
                o("placed", 0),
                o("begun", 5, deadline_ms=4_005),
                o("decided", 4_010, outcome="abort"),
            ),
            [("begun", 5), ("decided", 4_005)],
        ),
        # seen out of order (the topics are read side by side): measured when the predecessor comes
        ((o("begun", 5, deadline_ms=4_005), o("placed", 0)), [("begun", 5)]),
        (
            (
                o("placed", 0),
                o("begun", 5),
                o("rejected", 20, reason="deadline"),
                o("decided", 9, outcome="abort"),
            ),
            [("begun", 5), ("end_to_end", 20), ("rejected", 11), ("decided", 4)],
        ),
        # clock skew between writers never makes a negative latency
        ((o("placed", 50), o("begun", 40)), [("begun", 0)]),
    ],
)
def test_latencies(observations, latencies):
    _, measured = fold(*observations)
    assert [m for ms in measured for m in ms] == latencies


@pytest.mark.parametrize(
    "again",
    [
        o("shipped", 999),
        o("placed", 1, total_cents=9, currency="USD"),
        o("begun", 5, deadline_ms=1),
    ],
)
def test_a_stage_seen_again_changes_nothing(again):
    state, _ = fold(*HAPPY)
    new, measured = advance(state, again)
    assert new is state and measured == ()


def test_the_fold_keeps_what_each_stage_carries():
    state, _ = fold(*HAPPY)
    assert state.deadline_ms == 4_110 and state.total_cents == 500 and state.currency == "EUR"
    assert state.outcome == "commit" and state.terminal
    assert state.time("voted_payment") == 125
    assert OrderStages.from_dict(state.to_dict()) == state  # the table's JSON round trip


NOW = 100_000


@pytest.mark.parametrize(
    "observations, now, expected",
    [
        # nothing by the deadline from a stopped participant (and no coordinator to abort)
        (
            (o("placed", 0), o("begun", 10, deadline_ms=NOW - 6_000), o("voted_inventory", 20)),
            NOW,
            ("voted_inventory", "voted_payment", 6.0),
        ),
        # within the grace period: not yet
        ((o("placed", 0), o("begun", 10, deadline_ms=NOW - 5_000)), NOW, None),
        # confirmed but never shipped
        (
            (
                o("placed", 0),
                o("begun", 10, deadline_ms=NOW - 9_000),
                o("voted_inventory", 20),
                o("voted_payment", 30),
                o("decided", 40, outcome="commit"),
            ),
            NOW,
            ("decided", "shipped", 9.0),
        ),
        # aborted, the REJECTED status never came
        (
            (
                o("placed", 0),
                o("begun", 10, deadline_ms=NOW - 9_000),
                o("decided", 40, outcome="abort"),
            ),
            NOW,
            ("decided", "rejected", 9.0),
        ),
        # never begun (intake down): the default deadline runs from placed
        ((o("placed", NOW - 20_000),), NOW, ("placed", "begun", 10.0)),
        # finished orders are never stuck
        (HAPPY, NOW * 10, None),
        ((o("placed", 0), o("rejected", 5, reason="deadline")), NOW, None),
        # seen only mid-flight, without a deadline: nothing to measure by
        ((o("voted_payment", 0),), NOW, None),
    ],
)
def test_stuck(observations, now, expected):
    state, _ = fold(*observations)
    s = stuck(state, now, grace_ms=5_000, default_deadline_ms=10_000)
    assert (None if s is None else (s.stage, s.waiting_for, s.seconds_past_deadline)) == expected


@pytest.mark.parametrize(
    "observations, expected",
    [
        ((o("placed", 0),), "begun"),
        ((o("placed", 0), o("begun", 1)), "voted_inventory"),
        ((o("placed", 0), o("begun", 1), o("voted_inventory", 2)), "voted_payment"),
        (
            (o("placed", 0), o("begun", 1), o("voted_payment", 2), o("voted_inventory", 3)),
            "decided",
        ),
    ],
)
def test_waiting_for(observations, expected):
    assert waiting_for(fold(*observations)[0]) == expected


@pytest.mark.parametrize(
    "obs, expected",
    [
        (
            o("placed", 0, total_cents=500, currency="EUR"),
            (("orders", 1), ("revenue_cents:EUR", 500)),
        ),
        (
            o("rejected", 0, reason="payment:unknown_customer"),
            (("rejected:payment:unknown_customer", 1),),
        ),
        (o("shipped", 0), ()),
    ],
)
def test_window_counts(obs, expected):
    new, _ = advance(None, obs)
    assert window_counts(obs, new) == expected


def test_the_first_event_of_an_order_measures_nothing():
    assert advance(None, o("placed", 3)) == (OrderStages("o1", (("placed", 3),)), ())
