"""The coordinator rebuild's comparison, pure: a new owner's resumed state against the full fold
of tx.log, both at the position the resumed state stands at."""

from __future__ import annotations

from workers.coordinator.audit import compare_refold, open_orders
from workers.coordinator.fold import Tx

BOTH = ("inventory", "payment")


def tx(oid: str, outcome: str | None = None, acks=frozenset(), begun: bool = True) -> Tx:
    return Tx(oid, begun=begun, participants=BOTH if begun else (), outcome=outcome, acks=acks)


def test_agreement_is_no_difference():
    at_stop = {
        "a": tx("a"),
        "b": tx("b", "commit", frozenset({("inventory", "commit"), ("payment", "commit")})),
    }
    where = {"a": 0, "b": 0}
    assert compare_refold([0], at_stop, where, {0: {"a"}}, {"a": None}) == []


def test_each_way_the_two_folds_can_disagree_is_named():
    at_stop = {
        "open": tx("open"),
        "orphan": tx("orphan", begun=False),
        "split": tx("split", "abort"),
        "done": tx("done", "commit", frozenset({("inventory", "commit"), ("payment", "commit")})),
    }
    where = dict.fromkeys(at_stop, 1)
    kinds = {
        (d["order_id"], d["kind"])
        for d in compare_refold(
            [1], at_stop, where, {1: {"split", "done"}}, {"split": "commit", "done": "commit"}
        )
    }
    assert kinds == {
        ("open", "missing_in_refold"),
        ("orphan", "missing_in_refold"),
        ("done", "extra_in_refold"),
        ("split", "outcome_differs"),
    }


def test_open_orders_say_whom_they_wait_for():
    txs = {
        "undecided": tx("undecided"),
        "applying": tx("applying", "commit", frozenset({("payment", "commit")})),
    }
    opened = {o["order_id"]: o["waiting_for"] for o in open_orders([0], txs, dict.fromkeys(txs, 0))}
    assert opened == {"undecided": ["inventory", "payment"], "applying": ["inventory"]}
