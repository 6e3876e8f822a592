"""A participant's pure core, shared by inventory and payment: hold, commit or release amounts
of keyed resources (units of a SKU, cents of a customer's balance) for one order at a time.

Every effect has a natural key, the order id: a redelivered Prepare returns the recorded vote (a
no once the hold is released), a repeated Commit or Abort acknowledges again without a second
effect.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping

from schemas.events import Abort, Acked, Commit, OrderPlaced, Participant, Prepare, Vote, Voted


@dataclass(frozen=True)
class Resource:
    participant: Participant
    demand: Callable[[OrderPlaced], dict[str, int]]  # key -> amount the order needs
    unknown: str  # refusal when a key does not exist
    short: str  # refusal when a key has too little


INVENTORY = Resource("inventory", lambda o: dict(_lines(o)), "unknown_sku", "out_of_stock")
PAYMENT = Resource(
    "payment", lambda o: {o.customer_id: o.total_cents}, "unknown_customer", "insufficient_funds"
)


def _lines(order: OrderPlaced) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in order.items:
        counts[line.sku] += line.quantity
    return counts


@dataclass(frozen=True)
class Hold:
    order_id: str
    vote: Vote
    state: str  # held | committed | released | refused | aborted
    reason: str | None = None
    amounts: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Outcome:
    holds: dict[str, Hold]  # new or changed, by order id
    deltas: dict[str, list[int]]  # key -> [available, held, final] changes
    outputs: list[Voted | Acked]  # in input order
    anomalies: list[str]  # protocol breaches, for the operator


# moves amounts of keys: (amounts, available, held and final changes per unit)
Move = Callable[[Mapping[str, int], int, int, int], None]


def apply(
    resource: Resource,
    available: Mapping[str, int],
    known: Mapping[str, Hold],
    commands: Iterable[Prepare | Commit | Abort],
) -> Outcome:
    """Apply a batch of Prepare / Commit / Abort in order. `available` holds the current
    available amount of every key the batch may touch (a missing key does not exist); `known`
    the recorded hold of every order in the batch. Inputs are not mutated."""
    avail = dict(available)
    holds: dict[str, Hold] = {}
    out = Outcome(holds, {}, [], [])

    def move(amounts: Mapping[str, int], d_avail: int, d_held: int, d_final: int) -> None:
        for key, n in amounts.items():
            delta = out.deltas.setdefault(key, [0, 0, 0])
            delta[0] += d_avail * n
            delta[1] += d_held * n
            delta[2] += d_final * n
            avail[key] = avail.get(key, 0) + d_avail * n

    for cmd in commands:
        oid = cmd.order_id
        hold = holds.get(oid) or known.get(oid)
        if isinstance(cmd, Prepare):
            if hold is None:
                hold = _prepare(resource, cmd, avail)
                holds[oid] = hold
                if hold.state == "held":
                    move(hold.amounts, -1, +1, 0)
            out.outputs.append(_answer(resource, hold))
        elif isinstance(cmd, Commit):
            _commit(resource, oid, hold, out, move)
        elif isinstance(cmd, Abort):
            _abort(resource, oid, hold, out, move)
    return out


def _commit(resource: Resource, oid: str, hold: Hold | None, out: Outcome, move: Move) -> None:
    """A Commit takes what is held: once, however often it comes; never for an order not held."""
    if hold is None or hold.state not in ("held", "committed"):
        state = hold.state if hold else "unknown"
        out.anomalies.append(f"{oid}: Commit for an order in state {state}; not applied")
        return
    if hold.state == "held":
        out.holds[oid] = replace(hold, state="committed")
        move(hold.amounts, 0, -1, +1)
    out.outputs.append(Acked(oid, resource.participant, "commit"))


def _abort(resource: Resource, oid: str, hold: Hold | None, out: Outcome, move: Move) -> None:
    """An Abort releases what is held; before its Prepare, it makes that Prepare vote no; never
    undoes a commit."""
    if hold is not None and hold.state == "committed":
        out.anomalies.append(f"{oid}: Abort for a committed order; not applied")
        return
    if hold is None:  # never prepared: a late Prepare must vote no
        out.holds[oid] = Hold(oid, "no", "aborted", "aborted_before_prepare")
    elif hold.state == "held":
        out.holds[oid] = replace(hold, state="released")
        move(hold.amounts, +1, -1, 0)
    out.outputs.append(Acked(oid, resource.participant, "abort"))


def _answer(resource: Resource, hold: Hold) -> Voted:
    """A Prepare answered from the recorded hold. A released hold was aborted: answering with its
    recorded yes would let a forgotten order be decided again, as commit, with nothing held."""
    if hold.state == "released":
        return Voted(hold.order_id, resource.participant, "no", "released")
    return Voted(hold.order_id, resource.participant, hold.vote, hold.reason)


def _prepare(resource: Resource, cmd: Prepare, avail: Mapping[str, int]) -> Hold:
    # a Prepare read after its deadline still holds: the deadline is the coordinator's to call
    # (for a participant down or stuck, not one that is behind), and an Abort releases the hold
    oid = cmd.order_id
    need = resource.demand(cmd.order)
    for key, n in sorted(need.items()):
        if key not in avail:
            return Hold(oid, "no", "refused", resource.unknown)
        if avail[key] < n:
            return Hold(oid, "no", "refused", resource.short)
    return Hold(oid, "yes", "held", None, need)
