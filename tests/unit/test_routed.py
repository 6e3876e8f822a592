"""The participants share one commands topic: what the core addresses to each of them is written
once, and what goes elsewhere is kept, in order."""

from __future__ import annotations

from dataclasses import replace

from schemas.events import PARTICIPANTS, Commit, OrderPlaced, Prepare, TxBegun
from workers.coordinator.fold import commands, replay
from workers.intake.core import begin
from workers.runtime.messages import routed

DEST = {"tx.log": "tx", "status": "st", **dict.fromkeys(PARTICIPANTS, "cmd")}
ORDER = OrderPlaced.from_dict(
    {
        "order_id": "o-1",
        "customer_id": "c",
        "currency": "EUR",
        "items": [{"sku": "s", "quantity": 1, "unit_price_cents": 100}],
        "total_cents": 100,
        "placed_at_ms": 1,
    }
)


def test_a_begin_prepares_every_participant_with_one_record():
    out = routed(DEST, begin(ORDER, 1_000, 5_000))
    assert [t for t, _ in out] == ["tx", "cmd"]
    assert isinstance(out[0][1], TxBegun) and out[1][1] == Prepare("o-1", ORDER, 6_000)


def test_a_decision_for_both_participants_is_one_command():
    tx = replace(replay([TxBegun("o-1", PARTICIPANTS, 5_000)]), outcome="commit")
    assert routed(DEST, commands(tx, PARTICIPANTS)) == [("cmd", Commit("o-1"))]
    assert routed(DEST, commands(tx, [])) == []
