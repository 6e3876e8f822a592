"""The pipeline's invariants (DESIGN.md), one pure function each, over plain facts: the fold of
tx.log (order id -> Tx), the orders placed, the participants' holds (order id -> (state, amounts))
and ledgers (key -> (initial, available, held, final)), the status read model (order id ->
(status, reason)) and the shipments. Each returns what breaks its invariant (order ids, keys or
sentences), empty or None when it holds.

`orderbus verify` checks them all over the whole pipeline; the decision audit checks those about
one decided order as it re-folds the log. Which breach may still be a decision on its way is the
caller's to judge: verify waits for quiet, the audit looks at the acknowledgements."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Container, Iterable, Mapping, Sequence

from workers.coordinator.fold import Tx

CONFIRMED = ("CONFIRMED", "SHIPPED")
NOT_YET_SHOWN = (None, "PENDING")  # a status the decision may not have reached yet

# the copies of one order published: (partition, offset, content hash) each
Copies = Sequence[tuple[int, int, str]]
Dead = Container[tuple[str, int, int]]  # (topic, partition, offset) of each dead letter
Balances = Mapping[str, tuple[int, int, int, int]]  # key -> (initial, available, held, final)
Holds = Mapping[str, tuple[str, Mapping[str, int]]]  # order id -> (state, amounts)


# -- 1. every valid order decided exactly once, or dead-lettered; never both


def _all_dead(copies: Copies, dead: Dead, topic: str) -> bool:
    return all((topic, p, o) in dead for p, o, _ in copies)


def undecided(
    placed: Mapping[str, Copies], txs: Mapping[str, Tx], dead: Dead, topic: str
) -> list[str]:
    """Published and valid, but neither decided nor dead-lettered. `placed`: order id ->
    [(partition, offset, content hash)]; `dead`: the (topic, partition, offset) dead-lettered."""
    return [
        oid
        for oid, copies in placed.items()
        if (oid not in txs or txs[oid].outcome is None) and not _all_dead(copies, dead, topic)
    ]


def decided_and_dead(
    placed: Mapping[str, Copies], txs: Mapping[str, Tx], dead: Dead, topic: str
) -> list[str]:
    """Decided although every copy was dead-lettered."""
    return [
        oid
        for oid, copies in placed.items()
        if oid in txs and txs[oid].outcome is not None and _all_dead(copies, dead, topic)
    ]


def reused_not_dead(placed: Mapping[str, Copies], dead: Dead, topic: str) -> list[str]:
    """An order id published again with other content, and that copy not dead-lettered."""
    return [
        oid
        for oid, copies in placed.items()
        if any(h != copies[0][2] and (topic, p, o) not in dead for p, o, h in copies)
    ]


def invalid_not_dead(invalid: Iterable[tuple[int, int, str]], dead: Dead, topic: str) -> list[str]:
    """'partition:offset' of the malformed messages (partition, offset, reason) that are not
    dead-lettered."""
    return [f"{p}:{o}" for p, o, _ in invalid if (topic, p, o) not in dead]


def recorded_differs(tx: Tx) -> list[str]:
    """The decisions tx.log records that differ from the one its fold reaches."""
    return [
        f"tx.log records {outcome} ({reason}); the fold decides {tx.outcome}"
        for outcome, reason in tx.recorded
        if outcome != tx.outcome
    ]


def acked_other(tx: Tx) -> list[str]:
    """The participants that acknowledged the opposite of the decision."""
    return sorted(tx.conflicts)


# -- 2 and 3. a commit's effects applied exactly once, an abort's not at all


def effect_wrong(
    outcome: str,
    demand: Mapping[str, int],
    state: str | None,
    amounts: Mapping[str, int] | None,
    held_is_wrong: bool = True,
) -> str | None:
    """What a participant did about a decided order, if it is not what the decision asks: a
    commit takes exactly the order's `demand`; an abort takes nothing and (`held_is_wrong`,
    once it has arrived) holds nothing."""
    found = dict(amounts or {})
    if outcome == "commit":
        if state == "committed" and found == demand:
            return None
        return f"commit: expected committed {demand}, found {state} {found}"
    if state == "committed" or (state == "held" and held_is_wrong):
        return f"abort: expected nothing held or taken, found {state}"
    return None


# -- 4 and 5. per ledger key: conserved, never below zero, equal to the sum of its holds


def not_conserved(ledger: Balances) -> list[str]:
    return [
        k
        for k, (initial, available, held, final) in ledger.items()
        if initial != available + held + final
    ]


def negative(ledger: Balances) -> list[str]:
    return [
        k for k, (_, available, held, final) in ledger.items() if min(available, held, final) < 0
    ]


def still_held(ledger: Balances) -> list[str]:
    """Keys holding something: none may, once the pipeline is quiet."""
    return [k for k, (_, _, held, _) in ledger.items() if held]


def _by_state(holds: Holds) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for state, amounts in holds.values():
        out[state].update(dict(amounts))
    return out


def final_mismatch(ledger: Balances, holds: Holds) -> list[str]:
    """Keys whose taken amount is not the sum of the committed holds."""
    committed = _by_state(holds)["committed"]
    return [k for k, (_, _, _, final) in ledger.items() if final != committed[k]]


def held_mismatch(ledger: Balances, holds: Holds) -> list[str]:
    """Keys whose held amount is not the sum of the open holds."""
    held = _by_state(holds)["held"]
    return [k for k, (_, _, held_n, _) in ledger.items() if held_n != held[k]]


# -- 6. the status read model and shipping agree with the decisions


def status_wrong(outcome: str, shown: str | None) -> str | None:
    """The read model's status of a decided order, if it is not the decision's."""
    ok = shown in CONFIRMED if outcome == "commit" else shown == "REJECTED"
    return None if ok else f"{outcome}, but the read model shows {shown}"


def shipped_aborted(decided: Mapping[str, Tx], shipments: Container[str]) -> list[str]:
    return [oid for oid, tx in decided.items() if tx.outcome == "abort" and oid in shipments]


def not_shipped(decided: Mapping[str, Tx], shipments: Container[str]) -> list[str]:
    """Committed orders with no shipment: none may be, once the pipeline is quiet."""
    return [oid for oid, tx in decided.items() if tx.outcome == "commit" and oid not in shipments]


# -- 7. once quiet, nothing undecided


def begun_not_decided(txs: Mapping[str, Tx]) -> list[str]:
    """Transactions begun but not decided (fold.in_doubt is narrower: a yes vote held while it
    waits for the decision)."""
    return [oid for oid, tx in txs.items() if tx.outcome is None]
