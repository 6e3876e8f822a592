"""The tracker's pure core: which stage an event marks, how an order's stage times advance, which
latencies that yields, and whether an order is stuck. No clock, no I/O: times come in as arguments.

Times are the Kafka record timestamps (when the writer produced the event), so the latencies do
not depend on how far behind the tracker reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from schemas.events import Decided, Event, OrderPlaced, StatusChanged, TxBegun, Voted
from topics.catalogue import ORDERS_PLACED, ORDERS_STATUS, TX_LOG

STAGES = ("placed", "begun", "voted_inventory", "voted_payment", "decided", "shipped", "rejected")
TERMINAL = ("shipped", "rejected")
END_TO_END = "end_to_end"  # a histogram label too: placed -> shipped/rejected
# the topics whose events mark the stages
SOURCES = (ORDERS_PLACED, TX_LOG, ORDERS_STATUS)
# tx.log event types that mark no stage (observe returns None): the tracker skips them undecoded
UNFOLLOWED = ("Acked", "DeadlinePassed")


@dataclass(frozen=True, slots=True)
class Observation:
    """One event seen as "order X reached stage S at T", with what that stage carries."""

    order_id: str
    stage: str
    at_ms: int
    deadline_ms: int | None = None  # begun
    total_cents: int | None = None  # placed
    currency: str | None = None  # placed
    outcome: str | None = None  # decided: commit | abort
    reason: str | None = None  # a no vote, an abort, a rejection


@dataclass(frozen=True, slots=True)
class OrderStages:
    """The value of `order_to_stages`: when the order reached each stage (ms), and its deadline."""

    order_id: str
    at: tuple[tuple[str, int], ...] = ()  # (stage, ms), in the order they were seen
    deadline_ms: int | None = None
    total_cents: int | None = None
    currency: str | None = None
    outcome: str | None = None
    reason: str | None = None

    def time(self, stage: str) -> int | None:
        for name, ms in self.at:
            if name == stage:
                return ms
        return None

    @property
    def terminal(self) -> bool:
        return any(name in TERMINAL for name, _ in self.at)

    @property
    def last_ms(self) -> int:
        return max((ms for _, ms in self.at), default=0)

    @property
    def expirable(self) -> bool:
        """Finished, or a fragment (no placement, no transaction start: it has no deadline to be
        judged stuck by): such an order may leave the table once it is old."""
        return self.terminal or (self.time("placed") is None and self.time("begun") is None)

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies, and this runs for every stage of every order
        d = {"order_id": self.order_id, "at": dict(self.at)}
        for name in ("deadline_ms", "total_cents", "currency", "outcome", "reason"):
            value = getattr(self, name)
            if value is not None:
                d[name] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OrderStages:
        return cls(**{**d, "at": tuple(d.get("at", {}).items())})


@dataclass(frozen=True, slots=True)
class Stuck:
    order_id: str
    stage: str  # the last stage reached
    waiting_for: str  # the stage that has not come
    seconds_past_deadline: float


def observe(event: Event, at_ms: int) -> Observation | None:
    """The stage an event marks, or None for the events the tracker does not follow (Acked,
    DeadlinePassed, PENDING...)."""
    match event:
        case OrderPlaced():
            return Observation(
                event.order_id,
                "placed",
                at_ms,
                total_cents=event.total_cents,
                currency=event.currency,
            )
        case TxBegun():
            return Observation(event.order_id, "begun", at_ms, deadline_ms=event.deadline_ms)
        case Voted():
            return Observation(
                event.order_id,
                f"voted_{event.participant}",
                at_ms,
                reason=event.reason if event.vote == "no" else None,
            )
        case Decided():
            return Observation(
                event.order_id, "decided", at_ms, outcome=event.outcome, reason=event.reason
            )
        case StatusChanged(status="CONFIRMED"):
            # written with Decided in one transaction: a stand-in if the tx.log event is not seen
            return Observation(event.order_id, "decided", at_ms, outcome="commit")
        case StatusChanged(status="SHIPPED"):
            return Observation(event.order_id, "shipped", at_ms)
        case StatusChanged(status="REJECTED"):
            return Observation(event.order_id, "rejected", at_ms, reason=event.reason)
    return None


def _predecessor(state: OrderStages, stage: str) -> int | None:
    """When the step that leads to `stage` started."""
    if stage == "begun":
        return state.time("placed")
    if stage.startswith("voted_"):
        return state.time("begun")
    if stage == "decided":
        # the last vote seen (the one that completed or refused it); begun if none (deadline)
        votes = [ms for name, ms in state.at if name.startswith("voted_")]
        return max(votes) if votes else state.time("begun")
    if stage in TERMINAL:
        return state.time("decided")
    return None


def latencies(state: OrderStages) -> dict[str, int]:
    """Every stage latency the order's times allow (never negative: writers' clocks differ)."""
    out = {}
    for stage, ms in state.at:
        before = _predecessor(state, stage)
        if before is not None:
            out[stage] = max(0, ms - before)
    placed = state.time("placed")
    final = next((ms for stage, ms in state.at if stage in TERMINAL), None)
    if placed is not None and final is not None:
        out[END_TO_END] = max(0, final - placed)
    return out


def advance(
    state: OrderStages | None, obs: Observation
) -> tuple[OrderStages, tuple[tuple[str, int], ...]]:
    """Fold one observation into an order's stages; also the (stage, ms) latencies it makes
    measurable, each reported once. The first time a stage is seen wins, so a redelivered or
    re-sent event returns the same state object and no latency. Events of different topics can
    arrive in any order: a stage seen before its predecessor gets its latency when that comes."""
    state = state or OrderStages(obs.order_id)
    if state.time(obs.stage) is not None:
        return state, ()
    new = dataclasses.replace(
        state,
        at=state.at + ((obs.stage, obs.at_ms),),
        deadline_ms=state.deadline_ms if obs.deadline_ms is None else obs.deadline_ms,
        total_cents=state.total_cents if obs.total_cents is None else obs.total_cents,
        currency=state.currency or obs.currency,
        outcome=state.outcome or obs.outcome,
        reason=state.reason or obs.reason,
    )
    known = latencies(state)
    return new, tuple((stage, ms) for stage, ms in latencies(new).items() if stage not in known)


def waiting_for(state: OrderStages) -> str:
    """The next stage an unfinished order needs."""
    if state.time("begun") is None:
        return "begun"
    for participant in ("inventory", "payment"):
        if state.time(f"voted_{participant}") is None and state.time("decided") is None:
            return f"voted_{participant}"
    if state.time("decided") is None:
        return "decided"
    return "shipped" if state.outcome == "commit" else "rejected"


def stuck(state: OrderStages, now_ms: int, grace_ms: int, default_deadline_ms: int) -> Stuck | None:
    """An order not shipped or rejected by its deadline plus `grace_ms`. An order whose TxBegun
    was never seen gets the default deadline from when it was placed."""
    if state.terminal or not state.at:
        return None
    deadline = state.deadline_ms
    if deadline is None:
        placed = state.time("placed")
        if placed is None:
            return None  # seen only mid-flight (tracker started late): nothing to measure by
        deadline = placed + default_deadline_ms
    past_ms = now_ms - deadline
    if past_ms <= grace_ms:
        return None
    last = max(state.at, key=lambda sm: (sm[1], STAGES.index(sm[0])))[0]
    return Stuck(state.order_id, last, waiting_for(state), round(past_ms / 1000, 1))


def window_counts(obs: Observation, new: OrderStages) -> tuple[tuple[str, int], ...]:
    """What a first-time stage adds to the per-minute windows: (counter, amount). Revenue is per
    currency: cents of different currencies do not add up."""
    if obs.stage == "placed":
        return (("orders", 1), (f"revenue_cents:{new.currency}", new.total_cents or 0))
    if obs.stage == "rejected":
        return ((f"rejected:{obs.reason or 'unknown'}", 1),)
    return ()
