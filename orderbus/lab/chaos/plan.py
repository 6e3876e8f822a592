"""The fault plan of `orderbus chaos`: which faults, when, held how long. A pure function of its
arguments (and the seed), unit-tested on its own."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

PROCESS_KINDS = (
    "worker-kill",
    "worker-pause",
    "worker-churn",
    "broker-kill",
    "broker-pause",
    "pg-restart",
)
# an intake or coordinator instance restarted with its wall clock CLOCK_SKEW_S ahead or behind
# (libfaketime; its monotonic clock stays true, as a host's does when its time is wrong), and
# restarted with the true time when the fault is lifted
CLOCK_KINDS = ("clock-ahead", "clock-behind")
CLOCK_SKEW_S = 30
# on hosts of their own only (`up --hosts`): nftables rules inside one host's namespace
#   net-broker        a broker cut off from its peers, not from its clients
#   net-controller    the active controller cut off from every other host (it is the minority)
#   net-oneway        what a broker sends its peers is lost; it still hears them
#   net-worker-kafka  a worker instance cut off from every broker, not from its database
#   net-worker-pg     a worker instance cut off from its database, not from Kafka
#   net-loss          a worker instance's link loses LOSS_PERCENT of its packets both ways
NET_KINDS = (
    "net-broker",
    "net-controller",
    "net-oneway",
    "net-worker-kafka",
    "net-worker-pg",
    "net-loss",
)
KINDS = PROCESS_KINDS + CLOCK_KINDS + NET_KINDS
LOSS_PERCENT = 10
# how long a fault is held (s): a pause well past the 3 s consumer session timeout, so the group
# moves the partitions and the zombie's late writes must change nothing; a broker down a few seconds
HOLD_S = {
    "worker-kill": (0.0, 0.0),
    "worker-pause": (9.0, 11.0),
    "worker-churn": (5.0, 10.0),
    "broker-kill": (3.0, 6.0),
    "broker-pause": (3.0, 5.0),
    "pg-restart": (1.0, 3.0),
    # past the brokers' 4 s session and the consumers' 3 s: fenced, out of sync, moved
    "net-broker": (6.0, 10.0),
    "net-controller": (6.0, 10.0),
    "net-oneway": (6.0, 10.0),
    "net-worker-kafka": (6.0, 10.0),
    "net-worker-pg": (6.0, 10.0),
    "net-loss": (10.0, 15.0),
    "clock-ahead": (15.0, 20.0),
    "clock-behind": (15.0, 20.0),
}
# what the plan allows beyond the hold before the next fault: a restart, a JVM start and catch-up
SETTLE_S = {
    "worker-kill": 1.0,
    "worker-pause": 1.0,
    "worker-churn": 1.0,
    "broker-kill": 10.0,
    "broker-pause": 1.0,
    "pg-restart": 3.0,
    "net-broker": 10.0,  # back in sync
    "net-controller": 10.0,
    "net-oneway": 10.0,
    "net-worker-kafka": 2.0,
    "net-worker-pg": 2.0,
    "net-loss": 2.0,
    "clock-ahead": 3.0,  # the restart with the true time
    "clock-behind": 3.0,
}
BROKER_AIMS = ("controller", "leader", "any")  # which broker a broker-kill goes for
WARMUP_S = 8.0  # no fault before the load has run this long
TAIL_S = 10.0  # nor in the last seconds: the load runs on so recovery can be seen
MIN_GAP_S = 4.0  # between one fault being lifted and the next
JITTER_S = 3.0


@dataclass(frozen=True)
class Planned:
    kind: str
    at_s: float  # seconds after the load started
    hold_s: float  # how long the fault lasts (pause length, time a broker or PostgreSQL is down)
    pick: float  # in [0, 1): which of the candidates found at the time is the target
    aim: str = ""  # broker-kill: one of BROKER_AIMS


def check_kinds(kinds: Iterable[str]) -> None:
    """Raises ValueError naming every kind that is not a fault kind, and the kinds there are."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}; one of {', '.join(KINDS)}")


def plan(
    kinds: Iterable[str],
    duration_s: float,
    seed: int,
    warmup_s: float = WARMUP_S,
    tail_s: float = TAIL_S,
    min_gap_s: float = MIN_GAP_S,
    jitter_s: float = JITTER_S,
) -> list[Planned]:
    """Faults at seeded random times, one at a time: each starts at least `min_gap_s` after the
    previous one is expected to be over. Every kind in `kinds` comes once (in a seeded order)
    before any repeats, so every kind appears whenever the duration allows."""
    kinds = sorted(set(kinds))
    check_kinds(kinds)
    rng = random.Random(seed)  # private: the plan must not depend on who else draws
    first_round = list(kinds)
    rng.shuffle(first_round)
    out: list[Planned] = []
    t = warmup_s + rng.uniform(0, jitter_s)
    while kinds:
        kind = first_round.pop(0) if first_round else rng.choice(kinds)
        hold = round(rng.uniform(*HOLD_S[kind]), 1)
        pick = rng.random()
        aim = rng.choice(BROKER_AIMS) if kind == "broker-kill" else ""
        if t + hold + SETTLE_S[kind] > duration_s - tail_s:
            break
        out.append(Planned(kind, round(t, 1), hold, pick, aim))
        t += hold + SETTLE_S[kind] + min_gap_s + rng.uniform(0, jitter_s)
    return out


def duration_for_all(
    kinds: Iterable[str],
    warmup_s: float = WARMUP_S,
    tail_s: float = TAIL_S,
    min_gap_s: float = MIN_GAP_S,
    jitter_s: float = JITTER_S,
) -> float:
    """A duration long enough for one of each kind whatever the seed."""
    kinds = set(kinds)
    return math.ceil(
        warmup_s
        + tail_s
        + len(kinds) * (min_gap_s + jitter_s)
        + sum(HOLD_S[k][1] + SETTLE_S[k] for k in kinds)
    )
