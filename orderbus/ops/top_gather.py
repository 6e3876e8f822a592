"""What `orderbus top` shows, gathered: lag and status per group, orders by outcome, in-doubt,
dead letters, stage latencies from the tracker's metrics, stuck orders."""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from typing import Any

import psycopg2
from confluent_kafka import KafkaException
from prometheus_client.parser import text_string_to_metric_families

from orderbus.ops.errors import summary
from orderbus.ops.report import order_counts, read_from
from orderbus.ops.stuck import stuck_orders
from orderbus.ops.top_frame import OUTCOMES, Frame, GroupRow, StageRow, StuckRow
from topics.catalogue import DLQ_REASON, GROUPS, ORDERS_DLQ
from topics.lag import STATUSES, LagError, LagReader, Report, log_ends
from topics.read import BEGINNING, IncompleteRead, coordinates, read, text_headers
from workers.intake import store as intake_store
from workers.participant import store as participant_store
from workers.participant.store import LEDGERS
from workers.runtime.settings import TRACKER_GRACE_S, Settings
from workers.status import store as status_store
from workers.tracker import snapshot
from workers.tracker.metrics import STAGE_LATENCY
from workers.tracker.stages import END_TO_END, STAGES

METRICS_PORTS = 21  # worker i serves on metrics_port + i (orderbus/ops/supervise.py)
SCRAPE_TIMEOUT_S = 0.5  # per port: a refused port answers at once, a hung one must not
DLQ_READ_S = 5.0  # per frame; the count carries on from where the last read stopped
STUCK_SHOWN = 8


def p99(buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile(0.99) over cumulative buckets {upper bound: count}: linear
    within the bucket; inf when the rank falls in the +Inf bucket; None without observations."""
    bounds = sorted(buckets)
    total = buckets.get(math.inf, buckets[bounds[-1]] if bounds else 0)
    if total <= 0:
        return None
    rank = 0.99 * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return math.inf
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return math.inf


def parse_stage_buckets(text: str) -> dict[str, dict[float, float]] | None:
    """stage -> cumulative buckets from one /metrics page; None when the page has no tracker
    histogram (a pipeline worker's port, or something else)."""
    found: dict[str, dict[float, float]] | None = None
    for family in text_string_to_metric_families(text):
        if family.name != STAGE_LATENCY:
            continue
        found = {}
        for s in family.samples:
            if s.name.endswith("_bucket"):
                found.setdefault(s.labels["stage"], {})[float(s.labels["le"])] = s.value
    return found


class DeadLetterCounter:
    """Counts the dead-letter topic's committed records, reading on from where it stopped, so a
    refresh every few seconds does not re-read the whole topic."""

    def __init__(self, client_config: dict[str, Any], topic: str) -> None:
        self.config, self.topic = client_config, topic
        # every partition the topic has, learnt at the first refresh
        self.starts: dict[int, int] = {}
        self.count = 0
        self.by_reason: dict[str, int] = {}

    def refresh(self, timeout_s: float = DLQ_READ_S) -> bool:
        """Reads what was added; True when it reached the end (the count is exact). Raises
        KeyError when the topic does not exist."""
        if not self.starts:
            self.starts = {p: BEGINNING for p in log_ends(self.config, self.topic)} or self.starts
            if not self.starts:
                raise KeyError(self.topic)
        try:
            for msg in read(self.config, self.topic, starts=dict(self.starts), timeout_s=timeout_s):
                _, partition, offset = coordinates(msg)
                self.starts[partition] = offset + 1
                self.count += 1
                reason = text_headers(msg).get(DLQ_REASON) or "unknown"
                self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        except IncompleteRead:
            return False
        return True


class Gatherer:
    """Takes frames. Keeps what a single look cannot give: the lag windows (Burrow's rules need a
    trend), the previous counts and histogram (for rates and the window p99), the DLQ position."""

    def __init__(self, settings: Settings, client_config: dict[str, Any] | None = None) -> None:
        self.settings = settings
        config = client_config or settings.kafka()
        self.lag = LagReader(config, settings.names, timeout_s=5.0)
        self.dlq = DeadLetterCounter(config, settings.names.topic(ORDERS_DLQ))
        self.prev_counts: tuple[float, dict[str, int]] | None = None
        self.prev_buckets: dict[str, dict[float, float]] | None = None
        self.prev_at: float | None = None
        # this frame's lag report, which covers the tracker's group (or why there is none)
        self.tracker_lag: Report | str = "not read yet"

    def close(self) -> None:
        self.lag.close()

    def gather(self) -> Frame:
        now = time.monotonic()
        window = None if self.prev_at is None else now - self.prev_at
        self.prev_at = now
        parts: dict[str, Any] = {"window_s": window}
        parts.update(self._lag())
        parts.update(self._counts())
        parts.update(self._dead_letters())
        parts.update(self._stages())
        parts.update(self._stuck())
        return Frame(
            taken_at=time.time(), pipeline=self.settings.prefix.rstrip(".") or "main", **parts
        )

    def _lag(self) -> dict[str, Any]:
        try:
            # this pipeline's groups only: with no prefix, every test's and bench's would match
            mine = {self.settings.names.group(w) for w in GROUPS}
            self.lag.sample([g for g in self.lag.groups(prefix=self.settings.prefix) if g in mine])
            report = self.lag.report()
        except (LagError, KafkaException) as e:
            self.tracker_lag = f"Kafka at {self.settings.bootstrap}: {summary(e)}"
            return {"groups_why": self.tracker_lag}
        self.tracker_lag = report
        oldest: dict[str, float | None] = {}
        for p in report.partitions:
            if p.lag:
                seen = oldest.get(p.group, 0.0)
                oldest[p.group] = (
                    None if seen is None or p.lag_seconds is None else max(seen, p.lag_seconds)
                )
        rows = [
            GroupRow(g.group, g.status, g.lag, g.members, oldest.get(g.group, 0.0))
            for g in report.groups
        ]
        # the worst first: that is where an incident is
        rows.sort(key=lambda r: (-STATUSES.index(r.status) if r.status in STATUSES else 0, r.group))
        under = sum(
            n for t, n in report.under_replicated.items() if t.startswith(self.settings.prefix)
        )
        return {"groups": tuple(rows), "under_replicated": under}

    def _counts(self) -> dict[str, Any]:
        try:
            placed = read_from(self.settings, intake_store.DATABASE, intake_store.count_placed)
            by_status = read_from(
                self.settings, status_store.DATABASE, status_store.count_by_status
            )
        except psycopg2.Error as e:
            why = f"{intake_store.DATABASE} database: {summary(e)}"
            return {"counts_why": why, "rates_why": why}
        counts = order_counts(placed, by_status)
        out: dict[str, Any] = {"counts": counts}
        now, prev = time.monotonic(), self.prev_counts
        self.prev_counts = (now, counts)
        if prev is None:
            out["rates_why"] = "first sample; rates need two counts"
        else:
            dt = max(now - prev[0], 1e-3)
            out["rates"] = {k: max(0.0, (counts[k] - prev[1][k]) / dt) for k in OUTCOMES}
        out.update(self._in_doubt())
        return out

    def _in_doubt(self) -> dict[str, Any]:
        held: set[str] = set()
        for service in (ledger.database for ledger in LEDGERS.values()):
            try:
                held.update(read_from(self.settings, service, participant_store.held_orders))
            except psycopg2.Error as e:
                return {"in_doubt_why": f"{service} database: {summary(e)}"}
        return {"in_doubt": len(held)}

    def _dead_letters(self) -> dict[str, Any]:
        try:
            exact = self.dlq.refresh()
        except KeyError:
            return {"dead_letters": 0}  # no dead-letter topic yet: none written
        except (KafkaException, RuntimeError) as e:
            return {"dead_letters_why": f"{self.dlq.topic}: {summary(e)}"}
        return {
            "dead_letters": self.dlq.count,
            "dead_letters_exact": exact,
            "dead_letters_by_reason": dict(self.dlq.by_reason),
        }

    def _scrape_trackers(self) -> tuple[dict[str, dict[float, float]], list[int]]:
        """Every tracker histogram on the metrics ports, summed over instances."""
        summed: dict[str, dict[float, float]] = {}
        ports = []
        first = self.settings.metrics_port
        for port in range(first, first + METRICS_PORTS):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT_S
                ) as r:
                    text = r.read().decode()
                stages = parse_stage_buckets(text)
            except (OSError, ValueError):  # nothing there, not HTTP, not Prometheus text
                continue
            if stages is None:
                continue
            ports.append(port)
            for stage, buckets in stages.items():
                mine = summed.setdefault(stage, {})
                for le, n in buckets.items():
                    mine[le] = mine.get(le, 0.0) + n
        return summed, ports

    def _stages(self) -> dict[str, Any]:
        first = self.settings.metrics_port
        if not first:
            return {
                "stages_why": "tracker not reachable: metrics are off (ORDERBUS_METRICS_PORT=0)"
            }
        buckets, ports = self._scrape_trackers()
        prev, self.prev_buckets = self.prev_buckets, buckets
        if not ports:
            return {
                "stages_why": f"tracker not running (no tracker metrics on 127.0.0.1:"
                f"{first}-{first + METRICS_PORTS - 1})"
            }
        order = {s: i for i, s in enumerate((*STAGES, END_TO_END))}
        rows = []
        for stage in sorted(buckets, key=lambda s: (order.get(s, len(order)), s)):
            now = buckets[stage]
            before = (prev or {}).get(stage, {})
            delta = {le: n - before.get(le, 0.0) for le, n in now.items()}
            if prev is None or any(v < 0 for v in delta.values()):
                delta = {} if prev is None else now  # first look, or the tracker restarted
            rows.append(
                StageRow(
                    stage, int(delta.get(math.inf, 0)), p99(delta) if delta else None, p99(now)
                )
            )
        source = ", ".join(f"127.0.0.1:{p}" for p in ports)
        return {"stages": tuple(rows), "stages_source": source}

    def _stuck(self) -> dict[str, Any]:
        try:
            # the same cut as `orderbus stuck` by default
            found = stuck_orders(self.settings, TRACKER_GRACE_S, self.tracker_lag)
        except snapshot.SnapshotError as e:
            return {"stuck_why": str(e)}
        rows = tuple(
            StuckRow(s["order_id"], s["stage"], s["waiting_for"], s["seconds_past_deadline"])
            for s in found.orders[:STUCK_SHOWN]
        )
        return {
            "stuck": rows,
            "stuck_total": len(found.orders),
            "stuck_left_out_final": found.left_out_final,
            "stuck_untrusted_because": found.untrusted_because,
            "snapshot_age_s": found.snapshot_age_s,
        }
