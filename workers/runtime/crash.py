"""Crash points for fault tests: ORDERBUS_CRASH="worker:point:probability[,...]" makes the named
worker die (os._exit, no cleanup, like a SIGKILL) when it reaches the named point.

Points: after_db_commit (the batch's database transaction committed, its outputs not yet
produced), after_produce (outputs produced, not yet acknowledged, offsets not committed),
after_decision (coordinator: decision decided, commands not yet produced), after_hold
(participant: hold placed in the open database transaction, vote not emitted). `*` as the
worker matches every worker."""

from __future__ import annotations

import os
import random
import sys

POINTS = ("after_db_commit", "after_produce", "after_decision", "after_hold")


def parse(spec: str) -> dict[tuple[str, str], float]:
    plan = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            worker, point, prob = item.split(":")
            p = float(prob)
        except ValueError:
            raise ValueError(
                f"ORDERBUS_CRASH item {item!r} is not worker:point:probability"
            ) from None
        if point not in POINTS or not 0 <= p <= 1:
            raise ValueError(
                f"ORDERBUS_CRASH item {item!r}: point must be one of {POINTS}, probability within "
                "0..1"
            )
        plan[(worker, point)] = p
    return plan


class CrashPoints:
    def __init__(self, worker: str, spec: str = "", rng: random.Random | None = None):
        self.worker = worker
        self.plan = parse(spec)
        self.rng = rng or random.Random()

    def reach(self, point: str) -> None:
        p = self.plan.get((self.worker, point), self.plan.get(("*", point), 0.0))
        if p and self.rng.random() < p:
            print(f"crash point {self.worker}:{point} fired", file=sys.stderr, flush=True)
            os._exit(70)
