"""The decision audit's comparison over hand-made facts: one case per kind of mismatch."""

from __future__ import annotations

import pytest

from schemas.events import Acked, Decided, OrderPlaced, TxBegun, Voted
from workers.coordinator.audit import compare
from workers.coordinator.fold import replay

ORDER = OrderPlaced.from_dict(
    {
        "order_id": "o1",
        "customer_id": "c1",
        "currency": "EUR",
        "total_cents": 300,
        "items": [{"sku": "s1", "quantity": 3, "unit_price_cents": 100}],
    }
)
P = ("inventory", "payment")
COMMITTED = {
    "inventory": {"o1": ("committed", {"s1": 3})},
    "payment": {"o1": ("committed", {"c1": 300})},
}


def tx(outcome, acked=True, recorded=None):
    events = [TxBegun("o1", P, 10**13)]
    if outcome == "commit":
        events += [Voted("o1", "inventory", "yes", None), Voted("o1", "payment", "yes", None)]
    else:
        events += [Voted("o1", "inventory", "no", "out_of_stock")]
    events.append(Decided("o1", recorded or outcome, None))
    if acked:
        events += [Acked("o1", p, outcome) for p in P]
    return {"o1": replay(events)}


def kinds(result):
    return sorted(m.kind for m in result)


def test_a_committed_order_applied_everywhere_is_clean():
    bad, pending, audited = compare(
        tx("commit"), {"o1": ORDER}, COMMITTED, {"o1": ("SHIPPED", None)}
    )
    assert (bad, pending, audited) == ([], [], 1)


def test_an_aborted_order_holding_nothing_is_clean():
    holds = {"inventory": {"o1": ("refused", {})}, "payment": {"o1": ("released", {"c1": 300})}}
    assert compare(tx("abort"), {"o1": ORDER}, holds, {"o1": ("REJECTED", "x")})[0] == []


@pytest.mark.parametrize(
    "holds, status, expected",
    [
        (
            {"inventory": {"o1": ("released", {"s1": 3})}, "payment": COMMITTED["payment"]},
            ("CONFIRMED", None),
            ["inventory_not_applied"],
        ),
        (
            {"inventory": COMMITTED["inventory"], "payment": {"o1": ("committed", {"c1": 1})}},
            ("CONFIRMED", None),
            ["payment_not_applied"],
        ),
        (COMMITTED, ("REJECTED", "x"), ["status"]),
    ],
)
def test_commit_mismatches(holds, status, expected):
    assert kinds(compare(tx("commit"), {"o1": ORDER}, holds, {"o1": status})[0]) == expected


def test_abort_with_a_hold_taken_is_a_mismatch():
    bad, _, _ = compare(tx("abort"), {"o1": ORDER}, COMMITTED, {"o1": ("REJECTED", "x")})
    assert kinds(bad) == ["inventory_held", "payment_held"]


def test_unacknowledged_decisions_are_pending_not_mismatches():
    bad, pending, _ = compare(
        tx("commit", acked=False), {"o1": ORDER}, {}, {"o1": ("PENDING", None)}
    )
    assert bad == [] and kinds(pending) == [
        "inventory_not_applied",
        "payment_not_applied",
        "status",
    ]


def test_a_recorded_decision_differing_from_the_fold():
    bad, _, _ = compare(
        tx("commit", recorded="abort"), {"o1": ORDER}, COMMITTED, {"o1": ("CONFIRMED", None)}
    )
    assert kinds(bad) == ["recorded_differs"]


def test_a_decision_for_an_order_never_placed():
    assert kinds(compare(tx("commit"), {}, COMMITTED, {})[0]) == ["unknown_order"]
