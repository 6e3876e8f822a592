"""The in-doubt transactions (`orderbus top` counts them; the console lists them): every yes
vote a participant holds while it waits for a decision, with its age, the order's deadline and
what happens next. Read only: there is no "force commit", since a decision is the fold of tx.log
and nothing else (DESIGN.md), and any operator verdict would be a second, unlogged decider."""

from __future__ import annotations

import time
from dataclasses import dataclass

from orderbus.ops.report import read_from
from workers.coordinator import store as coordinator_store
from workers.coordinator.fold import Tx
from workers.participant import store as participant_store
from workers.participant.store import LEDGERS
from workers.runtime.settings import Settings

# the coordinator appends DeadlinePassed only once a participant yet to vote has shown nothing
# for max(deadline, SILENT_FLOOR_S) (README, How an order flows)
SILENT_FLOOR_S = 5.0


@dataclass(frozen=True)
class InDoubt:
    order_id: str
    participant: str
    age_s: float  # since the participant wrote its yes vote
    deadline_in_s: float | None  # negative: past; None: the coordinator has not saved the order
    votes: tuple[tuple[str, str], ...]  # (participant, vote) as the coordinator folded them
    next: str  # what happens next, in a sentence


def in_doubt(settings: Settings, now_s: float | None = None) -> list[InDoubt]:
    """Every held yes vote, oldest first, joined with what the coordinator saved of its order."""
    now_s = time.time() if now_s is None else now_s
    held: list[tuple[str, str, float]] = []
    for participant, ledger in LEDGERS.items():
        for order_id, since in read_from(settings, ledger.database, participant_store.held_since):
            held.append((participant, order_id, since.timestamp()))
    ids = sorted({order_id for _, order_id, _ in held})
    saved: dict[str, Tx] = {}
    if ids:
        rows = read_from(
            settings, coordinator_store.DATABASE, lambda cur: coordinator_store.lookup(cur, ids)
        )
        saved = {oid: tx for (_, oid), (tx, _) in rows.items()}
    out = []
    for participant, order_id, since_s in sorted(held, key=lambda h: (h[2], h[1], h[0])):
        tx = saved.get(order_id)
        deadline = None if tx is None or tx.deadline_ms is None else tx.deadline_ms / 1000 - now_s
        votes = () if tx is None else tuple((p, v) for p, v, _ in tx.votes)
        out.append(
            InDoubt(
                order_id,
                participant,
                now_s - since_s,
                deadline,
                votes,
                what_next(tx, participant, deadline, settings.deadline_ms / 1000),
            )
        )
    return out


def what_next(
    tx: Tx | None, participant: str, deadline_in_s: float | None, deadline_s: float
) -> str:
    """What resolves this hold, as the coordinator's rules say (workers/coordinator/fold.py)."""
    if tx is None:
        return (
            "the coordinator has saved nothing of this order: it saves about once a second, so the "
            "order is just begun, or the coordinator is down or behind (see its group's lag); it "
            "decides once it reads tx.log, and aborts at the deadline if a vote never comes"
        )
    if tx.outcome is not None:
        how = "release" if tx.outcome == "abort" else "make final"
        return (
            f"decided {tx.outcome}"
            + (f" ({tx.reason})" if tx.reason else "")
            + f": {participant} will "
            f"{how} its hold when it reads the decision; the coordinator re-sends it if "
            f"{participant} goes past it or stays silent"
        )
    voted = {p for p, _, _ in tx.votes}
    waiting = [p for p in tx.participants if p not in voted]
    if not waiting:
        return "every vote is in: the coordinator decides on its next read of tx.log"
    who = ", ".join(waiting)
    if deadline_in_s is None or deadline_in_s > 0:
        left = "" if deadline_in_s is None else f" in {deadline_in_s:.0f} s"
        return (
            f"waiting for {who}: commits when every vote is yes, aborts on a no, or at the "
            f"deadline{left} if {who} is down or stuck (never while merely behind)"
        )
    silent = max(deadline_s, SILENT_FLOOR_S)
    return (
        f"past its deadline by {-deadline_in_s:.0f} s, still waiting for {who}: the coordinator "
        f"aborts once {who} has shown nothing for {silent:g} s or voted on later orders; "
        "a participant merely behind gets its turn"
    )
