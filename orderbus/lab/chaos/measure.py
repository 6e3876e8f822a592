"""What `orderbus chaos` measures, over the decision timeline and the publisher's acknowledgements.

Progress is what a read_committed reader of `orders.status` sees: the moment each CONFIRMED or
REJECTED becomes visible, per partition (every topic has the same partitions, keyed by order id, so
a status partition stands for that slice of the whole pipeline).

Recovery, defined: a partition *stalled* because of a fault when, between the fault and shortly
after it was lifted (`until`), a span longer than `STALL_S` began in which that partition showed no
decision. The fault's `recovery_s` is the time from the fault until the last of its stalled
partitions decided again; 0.0 when no partition stalled (a killed shipping instance, say); None
when a stalled partition never decided again while we watched. A partition that had already
stalled before the fault (no decision in the `STALL_S` before it) is listed apart and left out.

The functions are pure and unit-tested on synthetic timelines; `Acks` and `DecisionWatcher` only
record what the shell sees.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from typing import Any

from confluent_kafka import KafkaError, Message

from orderbus.lab.stats import percentile
from orderbus.lab.watch import TopicWatcher, value_of
from topics.read import coordinates
from workers.runtime.settings import Settings

STALL_S = 1.0  # a partition with no decision for longer than this is stalled
GRACE_S = 2.0  # a stall that begins this soon after the fault was lifted is still its doing


def partition_stall(
    times: list[float], at: float, until: float, end: float, stall_s: float = STALL_S
) -> float | None:
    """For one partition's sorted decision times: the seconds from `at` until it decided again
    after a stall that began in [at, until); None when it did not stall there; inf when it had
    not decided again by `end`, the last moment observed."""
    start = at
    for t in times[bisect.bisect_right(times, at) :]:
        if start >= until:
            return None
        if t - start > stall_s:
            return t - at
        start = t
    if start < until and end - start > stall_s:
        return math.inf
    return None


def already_stalled(times: list[float], at: float, stall_s: float = STALL_S) -> bool:
    """No decision in the `stall_s` before `at`: whatever stalls it, it is not a fault at `at`."""
    i = bisect.bisect_right(times, at)
    return i == 0 or times[i - 1] < at - stall_s


def fault_recovery(
    decisions: dict[int, list[float]], at: float, until: float, end: float, stall_s: float = STALL_S
) -> tuple[float | None, list[int], list[int]]:
    """(recovery seconds, the partitions that stalled, those already stalled before it) for a
    fault at `at`, lifted at `until - GRACE_S`; see the module docstring. `decisions` must hold
    every partition, even one without a decision. A partition already stalled when the fault
    came is left out of its recovery (an earlier fault or a halted worker holds it; the
    longest gap and verify report that)."""
    before = sorted(p for p, ts in decisions.items() if already_stalled(ts, at, stall_s))
    stalls = {
        p: partition_stall(ts, at, until, end, stall_s)
        for p, ts in decisions.items()
        if p not in before
    }
    hit = sorted(p for p, s in stalls.items() if s is not None)
    if not hit:
        return 0.0, [], before
    worst = max(s for s in stalls.values() if s is not None)
    return (None if math.isinf(worst) else round(worst, 2)), hit, before


def max_gap(times: list[float], start: float, end: float, observed: float) -> tuple[float, float]:
    """(seconds, where it began) of the longest span with no decision at all that began while the
    load ran, in [start, end); a span still open closes at `observed`."""
    times = sorted(times)
    prev, best = start, (0.0, start)
    for t in times[bisect.bisect_right(times, start) :]:
        if prev >= end:
            break
        if t - prev > best[0]:
            best = (t - prev, prev)
        prev = t
    if prev < end and observed - prev > best[0]:
        best = (observed - prev, prev)
    return round(best[0], 2), round(best[1], 2)


def per_second(times: list[float], start: float, end: float) -> list[int]:
    """Decisions in each whole second from `start` up to `end`."""
    counts = [0] * max(0, math.ceil(end - start))
    for t in times:
        i = math.floor(t - start)
        if 0 <= i < len(counts):
            counts[i] += 1
    return counts


class Acks:
    """When each published order was sent and acknowledged (seconds since t0), in send order."""

    def __init__(self, t0: float):
        self.t0 = t0
        self.waits: list[tuple[float, float]] = []  # (sent, waited)

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            latency = msg.latency() or 0.0  # librdkafka: produce() to acknowledgement
            now = time.monotonic() - self.t0
            self.waits.append((now - latency, latency))

    def longest_wait(self, start_s: float, end_s: float) -> float | None:
        """The longest acknowledgement wait that overlapped [start_s, end_s]: orders sent during
        it, and those in flight when it began."""
        waits = [w for sent, w in self.waits if sent <= end_s and sent + w >= start_s]
        return round(max(waits), 2) if waits else None


class DecisionWatcher(TopicWatcher):
    """When each CONFIRMED/REJECTED becomes visible to a read_committed reader, per partition."""

    def __init__(self, settings: Settings, topic: str, t0: float) -> None:
        super().__init__(settings, topic, log_level=2)
        self.t0 = t0
        self.times: dict[int, list[float]] = {p: [] for p in range(settings.partitions)}
        self.decided: dict[str, str] = {}

    def seen(self, msg: Message, now: float) -> None:
        event = json.loads(value_of(msg))  # the workers validated it already
        if event["status"] in ("CONFIRMED", "REJECTED"):
            self.times[coordinates(msg)[1]].append(now - self.t0)
            self.decided.setdefault(event["order_id"], event["status"])


def summary_by_kind(faults: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Recovery p50 and max per fault kind (None values counted apart)."""
    out: dict[str, dict[str, float | None]] = {}
    for kind in sorted({f["kind"] for f in faults}):
        rs = [f["recovery_s"] for f in faults if f["kind"] == kind]
        known = [r for r in rs if r is not None]
        stalls = [
            f["publish_stall_s"]
            for f in faults
            if f["kind"] == kind and f.get("publish_stall_s") is not None
        ]
        out[kind] = {
            "faults": len(rs),
            "p50_s": percentile(known, 0.5),
            "max_s": max(known) if known else None,
            "unrecovered": len(rs) - len(known),
            "publish_stall_max_s": max(stalls) if stalls else None,
        }
    return out
