"""Each invariant of workers/invariants.py over hand-made facts: one case that breaks
it and one that keeps it."""

from __future__ import annotations

import pytest

from schemas.events import Acked, Decided, TxBegun, Voted
from workers import invariants as inv
from workers.coordinator.fold import replay

T = "orders.placed.v1"
P = ("inventory", "payment")


def committed(oid="a", acks=("commit", "commit"), recorded="commit"):
    return replay(
        [
            TxBegun(oid, P, 1),
            Voted(oid, "inventory", "yes", None),
            Voted(oid, "payment", "yes", None),
            Decided(oid, recorded, None),
            *(Acked(oid, p, a) for p, a in zip(P, acks)),
        ]
    )


def aborted(oid="b"):
    return replay([TxBegun(oid, P, 1), Voted(oid, "inventory", "no", "out_of_stock")])


def undecided(oid="c"):
    return replay([TxBegun(oid, P, 1), Voted(oid, "payment", "yes", None)])


PLACED = {"a": [(0, 0, "h1")]}
DEAD_A = {(T, 0, 0)}
DEMAND = {"s1": 2}
# key -> (initial, available, held, final)
LEDGER = {"s1": (10, 5, 2, 3)}
HOLDS = {"a": ("committed", {"s1": 3}), "b": ("held", {"s1": 2}), "c": ("released", {})}

CASES = {
    # name: (the check, facts that break it, what it finds, facts that keep it)
    "undecided": (
        lambda f: inv.undecided(PLACED, f, set(), T),
        {"a": undecided("a")},
        ["a"],
        {"a": committed()},
    ),
    "undecided, dead-lettered": (
        lambda dead: inv.undecided(PLACED, {}, dead, T),
        set(),
        ["a"],
        DEAD_A,
    ),
    "decided_and_dead": (
        lambda f: inv.decided_and_dead(PLACED, f, DEAD_A, T),
        {"a": committed()},
        ["a"],
        {"a": undecided("a")},
    ),
    "reused_not_dead": (
        lambda dead: inv.reused_not_dead({"a": [(0, 0, "h1"), (1, 4, "h2")]}, dead, T),
        set(),
        ["a"],
        {(T, 1, 4)},
    ),
    "invalid_not_dead": (
        lambda dead: inv.invalid_not_dead([(3, 7, "undecodable")], dead, T),
        set(),
        ["3:7"],
        {(T, 3, 7)},
    ),
    "recorded_differs": (
        inv.recorded_differs,
        committed(recorded="abort"),
        ["tx.log records abort (None); the fold decides commit"],
        committed(),
    ),
    "acked_other": (inv.acked_other, committed(acks=("commit", "abort")), ["payment"], committed()),
    "not_conserved": (inv.not_conserved, {"s1": (10, 6, 2, 3)}, ["s1"], LEDGER),
    "negative": (inv.negative, {"s1": (10, -1, 2, 9)}, ["s1"], LEDGER),
    "still_held": (inv.still_held, LEDGER, ["s1"], {"s1": (10, 7, 0, 3)}),
    "final_mismatch": (
        lambda ledger: inv.final_mismatch(ledger, HOLDS),
        {"s1": (10, 6, 2, 2)},
        ["s1"],
        LEDGER,
    ),
    "held_mismatch": (
        lambda ledger: inv.held_mismatch(ledger, HOLDS),
        {"s1": (10, 4, 3, 3)},
        ["s1"],
        LEDGER,
    ),
    "shipped_aborted": (
        lambda shipped: inv.shipped_aborted({"b": aborted()}, shipped),
        {"b"},
        ["b"],
        set(),
    ),
    "not_shipped": (
        lambda shipped: inv.not_shipped({"a": committed()}, shipped),
        set(),
        ["a"],
        {"a"},
    ),
    "begun_not_decided": (
        inv.begun_not_decided,
        {"c": undecided()},
        ["c"],
        {"a": committed(), "b": aborted()},
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_each_invariant_finds_its_breach_and_nothing_else(name):
    check, broken, found, clean = CASES[name]
    assert check(broken) == found
    assert check(clean) == []


@pytest.mark.parametrize(
    "outcome, state, amounts, held_is_wrong, wrong",
    [
        ("commit", "committed", DEMAND, True, None),
        (
            "commit",
            "committed",
            {"s1": 1},
            True,
            "commit: expected committed {'s1': 2}, found committed {'s1': 1}",
        ),
        (
            "commit",
            "held",
            DEMAND,
            True,
            "commit: expected committed {'s1': 2}, found held {'s1': 2}",
        ),
        ("commit", None, None, True, "commit: expected committed {'s1': 2}, found None {}"),
        ("abort", "released", DEMAND, True, None),
        ("abort", None, None, True, None),
        (
            "abort",
            "committed",
            DEMAND,
            False,
            "abort: expected nothing held or taken, found committed",
        ),
        ("abort", "held", DEMAND, True, "abort: expected nothing held or taken, found held"),
        ("abort", "held", DEMAND, False, None),  # the abort may still be on its way
    ],
)
def test_effect_wrong(outcome, state, amounts, held_is_wrong, wrong):
    assert inv.effect_wrong(outcome, DEMAND, state, amounts, held_is_wrong) == wrong


@pytest.mark.parametrize(
    "outcome, shown, wrong",
    [
        ("commit", "CONFIRMED", None),
        ("commit", "SHIPPED", None),
        ("commit", "PENDING", "commit, but the read model shows PENDING"),
        ("commit", "REJECTED", "commit, but the read model shows REJECTED"),
        ("abort", "REJECTED", None),
        ("abort", None, "abort, but the read model shows None"),
        ("abort", "SHIPPED", "abort, but the read model shows SHIPPED"),
    ],
)
def test_status_wrong(outcome, shown, wrong):
    assert inv.status_wrong(outcome, shown) == wrong
