"""The coordinator's open transactions as changelog records: a cache of the fold, so a new owner
of a tx.log partition resumes in seconds instead of re-reading the whole log."""
from __future__ import annotations

import json

from workers.coordinator.fold import Timers, Tx


def dumps(tx: Tx, timers: Timers) -> bytes:
    return json.dumps({
        "tx": {"order_id": tx.order_id, "begun": tx.begun, "participants": list(tx.participants),
               "deadline_ms": tx.deadline_ms, "votes": [list(v) for v in tx.votes],
               "outcome": tx.outcome, "reason": tx.reason, "acks": sorted(map(list, tx.acks)),
               "recorded": [list(r) for r in tx.recorded]},
        "timers": {"first_seen_ms": timers.first_seen_ms,
                   "deadline_appended_ms": timers.deadline_appended_ms,
                   "resent_ms": timers.resent_ms},
    }, separators=(",", ":")).encode()


def loads(value: bytes) -> tuple[Tx, Timers]:
    d = json.loads(value)
    t = d["tx"]
    tx = Tx(order_id=t["order_id"], begun=t["begun"], participants=tuple(t["participants"]),
            deadline_ms=t["deadline_ms"], votes=tuple(tuple(v) for v in t["votes"]),
            outcome=t["outcome"], reason=t["reason"], acks=frozenset(tuple(a) for a in t["acks"]),
            recorded=tuple(tuple(r) for r in t["recorded"]))
    return tx, Timers(**d["timers"])
