"""The coordinator's pure core: an order's decision is a fold over its tx.log events.

No clock, no I/O: time enters only as ``now_ms`` arguments, so replaying tx.log from the start on
any instance re-derives exactly the same decisions. The shell owns topics, state storage and ticks.

Choices worth knowing:
- a ``DeadlinePassed`` before any ``TxBegun`` decides abort: abort is always safe before a decision
  (nothing was committed anywhere), and an order whose begin is lost must not hang in doubt;
- ``DeadlinePassed`` is a marker: its ``at_ms`` is not compared with ``deadline_ms``, because the
  coordinator only appends it once the deadline has passed and the log order is what counts;
- an Abort goes to every named participant and to anyone who voted (both may hold something);
  a Commit goes only to the participants named by ``TxBegun``. A vote from a participant the first
  ``TxBegun`` does not name never decides (intake names everyone it sends ``Prepare`` to).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, TypeAlias

from schemas.events import (
    Abort,
    Acked,
    Commit,
    DeadlinePassed,
    Decided,
    Outcome,
    StatusChanged,
    TxBegun,
    Voted,
)

TxLogEvent: TypeAlias = TxBegun | Voted | DeadlinePassed | Decided | Acked
# (destination, event): destination is "tx.log", "status" or a participant name; the shell maps
# these to topics so that no topic name is spelled here (and the participants share one: the shell
# writes a command meant for both once, workers/runtime/messages.py `routed`).
Output: TypeAlias = tuple[str, DeadlinePassed | Decided | Commit | Abort | StatusChanged]

DEADLINE_REASON = "deadline"


@dataclass(frozen=True, slots=True)
class Tx:
    order_id: str
    begun: bool = False
    participants: tuple[str, ...] = ()
    deadline_ms: int | None = None
    votes: tuple[
        tuple[str, str, str | None], ...
    ] = ()  # distinct (participant, vote, reason), arrival order
    outcome: Outcome | None = None  # None until decided
    reason: str | None = None
    acks: frozenset[tuple[str, str]] = frozenset()  # (participant, outcome) as read from the log
    recorded: tuple[tuple[str, str | None], ...] = ()  # Decided events read back, for audit only

    @property
    def acked(self) -> frozenset[str]:
        """Participants that acknowledged *this* decision (an ack of the other outcome does not
        count)."""
        return frozenset(p for p, outcome in self.acks if outcome == self.outcome)

    @property
    def conflicts(self) -> frozenset[str]:
        """Participants that acknowledged the *other* outcome: an invariant breach for the audit."""
        if self.outcome is None:
            return frozenset()
        return frozenset(p for p, outcome in self.acks if outcome != self.outcome)

    @property
    def targets(self) -> tuple[str, ...]:
        """Who must hear the decision."""
        if self.outcome != "abort":
            return self.participants
        voters = tuple(dict.fromkeys(p for p, _, _ in self.votes if p not in self.participants))
        return self.participants + voters


@dataclass(frozen=True, slots=True)
class Timers:
    """Bookkeeping of the timer side, kept beside Tx by the shell and never folded from the log."""

    first_seen_ms: int | None = None  # when the shell first saw the order (for orphans)
    deadline_appended_ms: int | None = None
    resent_ms: int | None = None
    resends: int = 0  # decisions re-sent so far: each waits twice as long as the one before
    begun_at: int | None = None  # tx.log offset of its TxBegun, where the shell read it
    # of an order taken over from the store: its TxBegun is at or before this offset
    begun_by: int | None = None
    decided_at: int | None = None  # tx.log offset of the event that decided it


@dataclass(frozen=True, slots=True)
class Progress:
    """What the shell has read of one participant on one tx.log partition. Participants work
    through a partition in order, so an order begun (decided) before one it has voted on
    (acknowledged) is one it has gone past."""

    seen_ms: int  # when its last vote or ack was read
    voted_past: int = -1  # highest TxBegun offset among the orders it voted on
    acked_past: int = -1  # highest deciding offset among the orders it acknowledged


def fold(tx: Tx | None, event: TxLogEvent) -> Tx:
    if tx is None:
        tx = Tx(order_id=event.order_id)
    elif event.order_id != tx.order_id:
        raise ValueError(f"event for {event.order_id!r} folded into {tx.order_id!r}")
    if isinstance(event, TxBegun):
        if not tx.begun:  # a second TxBegun (a replayed intake) is ignored
            tx = replace(
                tx, begun=True, participants=event.participants, deadline_ms=event.deadline_ms
            )
    elif isinstance(event, Voted):
        vote = (event.participant, event.vote, event.reason)
        if vote not in tx.votes:  # redelivered votes are the same recorded vote
            tx = replace(tx, votes=tx.votes + (vote,))
    elif isinstance(event, DeadlinePassed):
        if tx.outcome is None:
            return replace(tx, outcome="abort", reason=DEADLINE_REASON)
    elif isinstance(event, Decided):
        return replace(tx, recorded=tx.recorded + ((event.outcome, event.reason),))
    elif isinstance(event, Acked):
        return replace(tx, acks=tx.acks | {(event.participant, event.outcome)})
    else:
        raise TypeError(f"{type(event).__name__} is not a tx.log event")
    return _decide(tx)


def _decide(tx: Tx) -> Tx:
    # Votes are kept from before TxBegun, but only count once we know who is named.
    if tx.outcome is not None or not tx.begun:
        return tx
    named = set(tx.participants)
    for participant, vote, reason in tx.votes:
        if vote == "no" and participant in named:
            return replace(tx, outcome="abort", reason=f"{participant}:{reason}")
    yes = {p for p, vote, _ in tx.votes if vote == "yes"}
    if named <= yes:
        return replace(tx, outcome="commit", reason=None)
    return tx


def replay(events: Iterable[TxLogEvent]) -> Tx:
    tx: Tx | None = None
    for event in events:
        tx = fold(tx, event)
    if tx is None:
        raise ValueError("replay of no events")
    return tx


def commands(tx: Tx, to: Iterable[str]) -> list[Output]:
    """The decision's command for each participant in ``to``."""
    cmd: Commit | Abort
    if tx.outcome == "commit":
        cmd = Commit(order_id=tx.order_id)
    elif tx.outcome == "abort":
        cmd = Abort(order_id=tx.order_id, reason=tx.reason or DEADLINE_REASON)
    else:
        raise ValueError(f"order {tx.order_id!r} is not decided")
    return [(p, cmd) for p in to]


def step(tx: Tx | None, event: TxLogEvent, now_ms: int) -> tuple[Tx, list[Output]]:
    """Fold one event; when it makes the decision, also return what announces it. After the
    decision, a participant that joins those who must hear it (a late yes vote on an abort, a
    TxBegun that names participants after an orphan was aborted) is told at once: it may hold
    something, and nothing else would ever release it."""
    was_decided = tx is not None and tx.outcome is not None
    told = tx.targets if tx is not None and was_decided else ()
    tx = fold(tx, event)
    if was_decided:
        return tx, commands(tx, [p for p in tx.targets if p not in told])
    if tx.outcome is None:
        return tx, []
    confirmed = tx.outcome == "commit"
    outputs: list[Output] = [("tx.log", Decided(tx.order_id, tx.outcome, tx.reason))]
    outputs += commands(tx, tx.targets)
    outputs.append(
        (
            "status",
            StatusChanged(tx.order_id, "CONFIRMED" if confirmed else "REJECTED", tx.reason, now_ms),
        )
    )
    return tx, outputs


def due(
    tx: Tx,
    timers: Timers,
    now_ms: int,
    resend_after_ms: int,
    orphan_after_ms: int | None = None,
    max_resend_ms: int = 30_000,
    progress: Mapping[str, Progress] | None = None,
    stall_ms: int | None = None,
) -> tuple[Timers, list[Output]]:
    """What the timer side must send now.

    A deadline is for a participant that is down or stuck, never for one that is merely behind:
    an undecided order past its deadline gets one ``DeadlinePassed`` unless every participant yet
    to vote has been heard from within ``stall_ms`` and has not gone past the order (it is working
    through the orders before it). When ``first_seen_ms`` and ``orphan_after_ms`` are given, an
    order seen without ``TxBegun`` (its begin lost) gets the deadline ``first_seen_ms +
    orphan_after_ms``, and a begun one never less than that.

    A decision not acknowledged by all is re-sent to a missing participant only when it may be
    lost (see ``_lost``), ``resend_after_ms`` after the decision, then twice as long after each
    re-send, up to ``max_resend_ms``. The first tick after a decision only starts that clock,
    because ``step`` has just sent it. So a slow moment never multiplies the traffic that made it
    slow, and a participant down for an hour comes back to one re-send per open order at most.
    """
    progress = progress or {}
    if tx.outcome is None:
        if timers.deadline_appended_ms is not None:
            return timers, []  # once per order: the fold decides when it reads the marker
        deadline = tx.deadline_ms
        if orphan_after_ms is not None and timers.first_seen_ms is not None:
            # the begin's deadline is intake's clock, read before intake's own database work:
            # whatever delayed the begin or skewed that clock, an order gets a whole deadline
            # from when this shell first saw it
            seen = timers.first_seen_ms + orphan_after_ms
            deadline = seen if not tx.begun or deadline is None else max(deadline, seen)
        if deadline is None or now_ms < deadline:
            return timers, []
        if _behind(tx, timers, now_ms, progress, stall_ms):
            return timers, []
        marker = DeadlinePassed(order_id=tx.order_id, at_ms=now_ms)
        return replace(timers, deadline_appended_ms=now_ms), [("tx.log", marker)]
    # the cheap checks first: the shell asks this of every open order several times a second
    if timers.resent_ms is None:
        return replace(timers, resent_ms=now_ms), []
    if now_ms - timers.resent_ms < min(resend_after_ms << min(timers.resends, 16), max_resend_ms):
        return timers, []
    acked = tx.acked
    to = [
        p
        for p in tx.targets
        if p not in acked and _lost(p, timers, progress, now_ms, resend_after_ms)
    ]
    if not to:
        return timers, []
    return replace(timers, resent_ms=now_ms, resends=timers.resends + 1), commands(tx, to)


def _seen_ms(participant: str, timers: Timers, progress: Mapping[str, Progress]) -> int:
    # not heard from since the shell took the order over: count from then, not from never
    seen = progress.get(participant)
    return seen.seen_ms if seen is not None else (timers.first_seen_ms or 0)


def _behind(
    tx: Tx, timers: Timers, now_ms: int, progress: Mapping[str, Progress], stall_ms: int | None
) -> bool:
    """Every participant yet to vote is alive and has not reached this order yet."""
    if not tx.begun or stall_ms is None:
        return False
    voted = {p for p, _, _ in tx.votes}
    missing = [p for p in tx.participants if p not in voted]
    for p in missing:
        if now_ms - _seen_ms(p, timers, progress) >= stall_ms:
            return False  # silent: down or stuck
        seen, begun = (
            progress.get(p),
            timers.begun_at if timers.begun_at is not None else timers.begun_by,
        )
        if seen is not None and begun is not None and seen.voted_past > begun:
            return False  # went past it without a vote: the Prepare or the vote was lost
    return bool(missing)


def _lost(
    p: str, timers: Timers, progress: Mapping[str, Progress], now_ms: int, quiet_ms: int
) -> bool:
    """Whether the decision may never reach `p` unless sent again: it went past the decision
    without acknowledging it; or it was silent since the decision (down, or idle with the command
    lost: one re-send tells them apart); or it came back after the last re-send and went quiet
    again without acknowledging it. A participant still silent after a re-send is down, and the
    command waits in its log: sending more would only lengthen the backlog it comes back to."""
    seen = progress.get(p)
    if seen is not None and timers.decided_at is not None and seen.acked_past > timers.decided_at:
        return True
    seen_ms, resent_ms = _seen_ms(p, timers, progress), timers.resent_ms or 0
    if timers.resends == 0:
        return seen_ms <= resent_ms
    return resent_ms < seen_ms <= now_ms - quiet_ms


def is_finished(tx: Tx) -> bool:
    """Decided and acknowledged by everyone it was sent to: nothing left to do for this order.

    The shell may drop the Tx then, but should remember the outcome (a late redelivered vote
    folded into a fresh Tx would otherwise look like a new, undecided order).
    """
    targets = tx.targets
    return tx.outcome is not None and bool(targets) and set(targets) <= tx.acked


def in_doubt(tx: Tx) -> bool:
    """Some participant holds something (voted yes) and waits for a decision."""
    return tx.outcome is None and any(vote == "yes" for _, vote, _ in tx.votes)


def to_dict(tx: Tx) -> dict[str, Any]:
    """The fold's state as JSON values, for the coordinator's store."""
    return {
        "order_id": tx.order_id,
        "begun": tx.begun,
        "participants": list(tx.participants),
        "deadline_ms": tx.deadline_ms,
        "votes": [list(v) for v in tx.votes],
        "outcome": tx.outcome,
        "reason": tx.reason,
        "acks": sorted(list(a) for a in tx.acks),
        "recorded": [list(r) for r in tx.recorded],
    }


def from_dict(d: dict[str, Any]) -> Tx:
    return Tx(
        order_id=d["order_id"],
        begun=d["begun"],
        participants=tuple(d["participants"]),
        deadline_ms=d["deadline_ms"],
        votes=tuple(tuple(v) for v in d["votes"]),
        outcome=d["outcome"],
        reason=d["reason"],
        acks=frozenset(tuple(a) for a in d["acks"]),
        recorded=tuple(tuple(r) for r in d["recorded"]),
    )
