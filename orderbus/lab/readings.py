"""What `orderbus bench` reads from the running pipeline: final statuses and tx.log steps as
readers see them, memory, broker CPU, the tracker's lag, group assignments."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from infra.kafka.cluster import pidfile
from infra.postgres import server as postgres
from infra.procs import read_pid
from orderbus.lab.stats import ms
from orderbus.lab.watch import TopicWatcher, value_of
from orderbus.ops.supervise import Supervisor
from topics.lag import LagError, LagReader
from topics.read import read, text_headers
from workers.runtime.settings import Settings
from workers.tracker.stages import SOURCES as TRACKER_SOURCES

FINAL = ("SHIPPED", "REJECTED")


class StatusWatcher(TopicWatcher):
    """When each order's decision and final status became visible."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings, topic)
        self.final: dict[str, tuple[float, str]] = {}
        self.final_made: dict[str, float] = {}  # the final status record's produce time
        self.decided: dict[str, float] = {}
        self.reasons: dict[str, str | None] = {}

    def seen(self, msg: Message, now: float) -> None:
        # the workers validated it already; a plain parse keeps the load generator light
        event = json.loads(value_of(msg))
        status, oid = event["status"], event["order_id"]
        if status in FINAL:
            self.final.setdefault(oid, (now, status))
            self.final_made.setdefault(oid, made_at(msg))
        if status == "REJECTED":
            self.reasons.setdefault(oid, event.get("reason"))
        if status in ("CONFIRMED", "REJECTED"):
            self.decided.setdefault(oid, now)


def made_at(msg: Message) -> float:
    """When a record was produced (its CreateTime), in seconds of the wall clock: every worker
    sets it on this machine's clock, when it produces the record."""
    return msg.timestamp()[1] / 1000


class TxLogWatcher(TopicWatcher):
    """When each order's transaction start, votes and decision were produced on tx.log."""

    MARKS = {"TxBegun": "begun", "Voted": "votes", "Decided": "decided"}

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings, topic)
        # order id -> mark -> when it was produced; "votes" -> a list of every vote's time
        self.seen_at: dict[str, dict[str, Any]] = {}

    def seen(self, msg: Message, now: float) -> None:
        mark = self.MARKS.get(text_headers(msg).get("type", ""))
        if mark == "votes":  # every vote, a redelivered one too: see hop_latencies
            self.seen_at.setdefault(json.loads(value_of(msg))["order_id"], {}).setdefault(
                "votes", []
            ).append(made_at(msg))
        elif mark:
            self.seen_at.setdefault(json.loads(value_of(msg))["order_id"], {}).setdefault(
                mark, made_at(msg)
            )


def hop_latencies(
    sent: dict[str, float], tx: dict[str, dict[str, Any]], final: dict[str, float]
) -> dict[str, dict[str, float]]:
    """p50/p99 ms of each step an order takes, from when one step's output was produced to when
    the next one's was, all on the wall clock: intake (publish -> TxBegun), participants (-> the
    last vote before the decision: the one it awaited), coordinator (-> Decided), final status
    (-> SHIPPED or REJECTED). Each step produced its output after reading the step before's, so
    no step is negative; times of reading would be, two watchers reading apart."""
    steps: dict[str, list[float]] = {
        "intake": [],
        "participants": [],
        "coordinator": [],
        "final_status": [],
    }
    for oid, t_sent in sent.items():
        at = tx.get(oid, {})
        if "begun" not in at or "decided" not in at or oid not in final:
            continue  # not seen whole
        awaited = [t for t in at.get("votes", ()) if t <= at["decided"]]
        if not awaited:
            continue  # decided by its deadline: no vote to split at
        chain = (t_sent, at["begun"], max(awaited), at["decided"], final[oid])
        for name, a, b in zip(steps, chain, chain[1:]):
            steps[name].append((b - a) * 1000)
    return {
        name: {
            "p50_ms": ms(v, 0.50),
            "p99_ms": ms(v, 0.99),
            "orders": len(v),
        }
        for name, v in steps.items()
    }


class RssSampler(threading.Thread):
    """Peak RSS and CPU seconds of every worker process, sampled from /proc."""

    TICK = os.sysconf("SC_CLK_TCK")
    EVERY_S = 0.5

    def __init__(self, sup: Supervisor) -> None:
        super().__init__(daemon=True)
        self.sup, self.running = sup, True
        self.peak: dict[str, float] = {}
        self.now: dict[str, float] = {}  # the latest sample
        self.cpu: dict[str, float] = {}

    def run(self) -> None:
        while self.running:
            self.sample()
            time.sleep(self.EVERY_S)

    def sample(self) -> dict[str, float]:
        """Reads every worker's RSS and CPU now; returns the CPU seconds."""
        for c in self.sup.children:
            if c.proc and c.proc.poll() is None:
                try:
                    with open(f"/proc/{c.proc.pid}/status") as f:
                        kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
                    fields = _stat(c.proc.pid)
                except (OSError, StopIteration):
                    continue
                self.now[c.label] = kb / 1024
                self.peak[c.label] = max(self.peak.get(c.label, 0), kb / 1024)
                self.cpu[c.label] = _cpu_s(fields)
        return dict(self.cpu)


class TrackerLag(threading.Thread):
    """The order tracker's consumer lag, in messages and in seconds (the age of its oldest
    unconsumed message, as `orderbus lag` reports it), sampled every second."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.reader = LagReader(settings.kafka(), settings.names)
        self.group = settings.names.group("tracker")
        self.sources = len(TRACKER_SOURCES) * settings.partitions  # partitions it reads
        self.samples: list[tuple[float, int, float]] = []  # (monotonic, messages, seconds)
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                self.reader.sample([self.group])
                parts = self.reader.report().partitions
            except LagError:
                parts = []
            # every source partition, once the group has committed for each of them
            lags = [p.lag for p in parts if p.lag is not None]
            ages = [p.lag_seconds for p in parts if p.lag_seconds is not None]
            if len(parts) == self.sources and len(lags) == len(ages) == len(parts):
                self.samples.append((time.monotonic(), sum(lags), max(ages)))
            time.sleep(1.0)

    def stop(self) -> None:
        self.running = False
        self.join(5)
        self.reader.close()

    def caught_up_after(self, t: float) -> float | None:
        """Seconds from `t` until a sample showed nothing older than a second unconsumed."""
        return next((round(ts - t, 1) for ts, _, s in self.samples if ts >= t and s <= 1.0), None)

    def summary(self, t0: float, last: float) -> dict[str, float | None]:
        during = [(m, s) for ts, m, s in self.samples if t0 <= ts <= last]
        return {
            "max_lag": max((m for m, _ in during), default=None),
            "max_lag_s": max((s for _, s in during), default=None),
            "caught_up_s": self.caught_up_after(last),
        }


def end_offsets(settings: Settings, topics: list[str]) -> dict[str, dict[int, int]]:
    admin = AdminClient(settings.kafka())
    meta = admin.list_topics(timeout=30).topics
    consumer = Consumer(settings.kafka(**{"group.id": f"{settings.prefix}bench", "log_level": 3}))
    try:
        return {
            t: {
                p: consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                for p in meta[t].partitions
            }
            for t in topics
        }
    finally:
        consumer.close()


def records_by_type(settings: Settings, starts: dict[str, dict[int, int]]) -> dict[str, int]:
    """Records written to each pipeline topic since `starts`, by topic and event type."""
    counts: Counter[str] = Counter()
    for topic, offsets in starts.items():
        short = topic[len(settings.prefix) :].rsplit(".v", 1)[0]
        for msg in read(settings.kafka(), topic, offsets, timeout_s=120, committed=False):
            kind = text_headers(msg).get("type") or "other"
            counts[f"{short}:{kind}"] += 1
    return dict(sorted(counts.items()))


def _stat(pid: int | str) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (field 3 of proc(5) first)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _cpu_s(fields: list[str], reaped: bool = False) -> float:
    """utime + stime, and with `reaped` the CPU of the children it has waited for."""
    ticks = sum(int(fields[i]) for i in ((11, 12, 13, 14) if reaped else (11, 12)))
    return ticks / RssSampler.TICK


def broker_cpu_s(settings: Settings) -> float:
    """CPU seconds the local brokers have used so far (0 where their pids are unknown)."""
    layout, total = settings.layout(), 0.0
    for node in layout.nodes:
        try:
            pid = read_pid(pidfile(layout, node))
            if pid is not None:  # None: not running, or its pid file unreadable
                total += _cpu_s(_stat(pid))
        except (OSError, TypeError, ValueError):
            pass
    return total


def postgres_cpu_s(settings: Settings) -> float:
    """CPU seconds the local PostgreSQL server has used so far: the postmaster, the sessions and
    helpers it runs now, and those that have ended (0 where its pid is unknown)."""
    master = postgres.running(settings.layout())
    if master is None:
        return 0.0
    try:
        total = _cpu_s(_stat(master), reaped=True)
    except (OSError, ValueError):
        return 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = _stat(entry)
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == master:
                total += _cpu_s(fields)
    return total


def own_cpu_s() -> float:
    """CPU seconds this process (the load generator and its readers) has used so far."""
    t = os.times()
    return t.user + t.system


def groups_ready(settings: Settings, workers: Iterable[str]) -> bool:
    """Every worker's group is stable with all of its topics' partitions assigned."""
    admin = AdminClient(settings.kafka())
    names = [settings.names.group(w) for w in workers]
    try:
        described = {g: f.result(10) for g, f in admin.describe_consumer_groups(names).items()}
    except Exception:
        return False
    for group in described.values():
        assigned = sum(len(m.assignment.topic_partitions) for m in group.members)
        if not str(group.state).upper().endswith("STABLE") or assigned == 0:
            return False
    return True
