"""`orderbus top`: the pipeline in one pane for an incident. `Gatherer.gather()` takes a `Frame`
(pure data: every figure, or None with the reason it is missing); `render(frame)` draws it and is
a pure function of the frame, so what an operator sees is unit-tested without a cluster."""
from __future__ import annotations

import io
import math
import time
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field

import psycopg2
from confluent_kafka import KafkaException
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from orderbus.ops.report import PARTICIPANT_DATABASES, connect
from topics.catalogue import DLQ_REASON, GROUPS, ORDERS_DLQ
from topics.lag import STATUSES, LagError, LagReader
from topics.read import BEGINNING, IncompleteRead, read
from workers.tracker import snapshot
from workers.tracker.metrics import MS_BUCKETS
from workers.tracker.stages import END_TO_END, GRACE_S, STAGES

OUTCOMES = ("placed", "confirmed", "rejected", "shipped")   # the rates shown, per second
STAGE_HISTOGRAM = "orderbus_tracker_stage_latency_ms"        # workers/tracker/metrics.py
METRICS_PORTS = 21              # worker i serves on metrics_port + i (orderbus/ops/supervise.py)
SCRAPE_TIMEOUT_S = 0.5          # per port: a refused port answers at once, a hung one must not
DLQ_READ_S = 5.0                # per frame; the count carries on from where the last read stopped
STUCK_SHOWN = 8
STATUS_STYLE = {"OK": "green", "WARN": "yellow", "STALL": "bold red", "STOP": "bold red",
                "ERR": "bold red"}


@dataclass(frozen=True)
class GroupRow:
    group: str
    status: str
    lag: int
    members: int | None
    oldest_s: float | None          # age of the oldest unconsumed message; None: not read in time


@dataclass(frozen=True)
class StageRow:
    stage: str
    window_count: int               # observations since the previous frame
    window_p99_ms: float | None     # None: no observation in the window; inf: above every bucket
    total_p99_ms: float | None      # since the tracker started


@dataclass(frozen=True)
class StuckRow:
    order_id: str
    stage: str
    waiting_for: str
    seconds_past_deadline: float


@dataclass(frozen=True)
class Frame:
    """One refresh. A figure that could not be had is None and its `*_why` says why."""
    taken_at: float                                 # epoch seconds
    pipeline: str                                   # the topic prefix, or "main"
    window_s: float | None = None                   # since the previous frame: rates, stage window
    groups: tuple[GroupRow, ...] | None = None
    groups_why: str | None = None
    under_replicated: int | None = None
    counts: dict[str, int] | None = None            # placed, pending, confirmed, rejected, shipped
    counts_why: str | None = None
    rates: dict[str, float] | None = None           # per second, over window_s
    rates_why: str | None = None
    in_doubt: int | None = None
    in_doubt_why: str | None = None
    dead_letters: int | None = None
    dead_letters_exact: bool = True
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    dead_letters_why: str | None = None
    stages: tuple[StageRow, ...] | None = None
    stages_source: str | None = None                # where the histogram was scraped
    stages_why: str | None = None
    stuck: tuple[StuckRow, ...] | None = None       # the most overdue first
    stuck_total: int = 0
    snapshot_age_s: float | None = None
    stuck_why: str | None = None


# -- rendering: a pure function of the frame

def render(frame: Frame) -> Group:
    when = time.strftime("%H:%M:%S", time.localtime(frame.taken_at))
    title = Text.assemble(("orderbus top", "bold"), f"  pipeline {frame.pipeline}  {when}  ",
                          ("q or Ctrl-C quits", "dim"))
    return Group(title, _orders(frame), _groups(frame), _stages(frame), _stuck(frame))


def to_text(frame: Frame, width: int = 120) -> str:
    """The frame as plain text, as `--once` prints it to a file or a pipe."""
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(render(frame))
    return console.file.getvalue()


def _title(text: str) -> Text:
    return Text(text, style="bold")


def _na(why: str | None) -> Text:
    return Text(f"n/a: {why or 'unknown'}", style="yellow")


def _orders(frame: Frame):
    in_doubt = (_na(frame.in_doubt_why) if frame.in_doubt is None
                else Text(str(frame.in_doubt), style="bold red" if frame.in_doubt else ""))
    tail = [Text.assemble("in doubt ", in_doubt),
            Text.assemble("dead letters ", _dead_letters(frame))]
    if frame.counts is None:
        return Group(Text.assemble(("ORDERS ", "italic"), _na(frame.counts_why)), *tail)
    window = f"/s (last {frame.window_s:.1f}s)" if frame.window_s else "/s"
    t = Table()
    t.add_column("outcome")
    t.add_column("total", justify="right")
    t.add_column(window, justify="right")
    for name in ("placed", "pending", "confirmed", "rejected", "shipped"):
        if name not in OUTCOMES:
            rate = ""
        else:
            rate = "n/a" if frame.rates is None else f"{frame.rates.get(name, 0.0):.1f}"
        t.add_row(name, str(frame.counts.get(name, 0)), rate)
    if frame.rates is None:
        tail.insert(0, Text.assemble("rates ", _na(frame.rates_why)))
    return Group(_title("ORDERS"), t, *tail)


def _dead_letters(frame: Frame) -> Text:
    if frame.dead_letters is None:
        return _na(frame.dead_letters_why)
    text = str(frame.dead_letters) + ("" if frame.dead_letters_exact else " (at least)")
    if frame.dead_letters_by_reason:
        reasons = sorted(frame.dead_letters_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
        text += ": " + ", ".join(f"{r} {n}" for r, n in reasons)
    return Text(text)


def _groups(frame: Frame):
    if frame.groups is None:
        return Text.assemble(("CONSUMER GROUPS ", "italic"), _na(frame.groups_why))
    under = ("" if frame.under_replicated is None
             else f", under-replicated partitions {frame.under_replicated}")
    t = Table()
    for name, justify in (("group", "left"), ("status", "left"), ("lag", "right"),
                          ("oldest unconsumed", "right"), ("members", "right")):
        t.add_column(name, justify=justify)
    for g in frame.groups:
        t.add_row(g.group, Text(g.status, style=STATUS_STYLE.get(g.status, "")), str(g.lag),
                  "-" if g.oldest_s is None else f"{g.oldest_s:.1f}s",
                  "?" if g.members is None else str(g.members))
    if not frame.groups:
        t.add_row("(no consumer group of this pipeline)", "", "", "", "")
    return Group(_title(f"CONSUMER GROUPS ({len(frame.groups)}{under})"), t)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return f"> {MS_BUCKETS[-1]:,} ms"
    return f"{value:,.0f} ms"


def _stages(frame: Frame):
    if frame.stages is None:
        return Text.assemble(("STAGE LATENCY p99 ", "italic"), _na(frame.stages_why))
    window = f"last {frame.window_s:.1f}s" if frame.window_s else "window"
    t = Table()
    for name in ("stage", f"n ({window})", f"p99 ({window})", "p99 (since tracker start)"):
        t.add_column(name, justify="left" if name == "stage" else "right")
    for s in frame.stages:
        t.add_row(s.stage, str(s.window_count), _ms(s.window_p99_ms), _ms(s.total_p99_ms))
    if not frame.stages:
        t.add_row("(no latency observed yet)", "", "", "")
    return Group(_title(f"STAGE LATENCY p99 (tracker at {frame.stages_source})"), t)


def _stuck(frame: Frame):
    if frame.stuck is None:
        return Text.assemble(("STUCK ORDERS ", "italic"), _na(frame.stuck_why))
    age = ("" if frame.snapshot_age_s is None
           else f", tracker snapshot {frame.snapshot_age_s:.0f}s old")
    title = _title(f"STUCK ORDERS ({frame.stuck_total} more than {GRACE_S:g}s past their "
                   f"deadline{age})")
    if not frame.stuck:
        return title
    t = Table()
    for name in ("order", "last stage", "waiting for", "past deadline"):
        t.add_column(name, justify="right" if name == "past deadline" else "left")
    for s in frame.stuck:
        t.add_row(s.order_id, s.stage, s.waiting_for, f"{s.seconds_past_deadline:.1f}s")
    if frame.stuck_total > len(frame.stuck):
        more = frame.stuck_total - len(frame.stuck)
        t.add_row(f"... and {more} more (orderbus stuck)", "", "", "")
    return Group(title, t)


# -- gathering

def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


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
    found = None
    for family in text_string_to_metric_families(text):
        if family.name != STAGE_HISTOGRAM:
            continue
        found = {}
        for s in family.samples:
            if s.name.endswith("_bucket"):
                found.setdefault(s.labels["stage"], {})[float(s.labels["le"])] = s.value
    return found


class DeadLetterCounter:
    """Counts the dead-letter topic's committed records, reading on from where it stopped, so a
    refresh every few seconds does not re-read the whole topic."""

    def __init__(self, client_config: dict, topic: str):
        self.config, self.topic = client_config, topic
        self.starts = {p: BEGINNING for p in range(ORDERS_DLQ.partitions)}
        self.count = 0
        self.by_reason: dict[str, int] = {}

    def refresh(self, timeout_s: float = DLQ_READ_S) -> bool:
        """Reads what was added; True when it reached the end (the count is exact)."""
        try:
            for msg in read(self.config, self.topic, starts=dict(self.starts), timeout_s=timeout_s):
                self.starts[msg.partition()] = msg.offset() + 1
                self.count += 1
                reason = next((v.decode(errors="replace") for k, v in msg.headers() or ()
                               if k == DLQ_REASON and v is not None), "unknown")
                self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        except IncompleteRead:
            return False
        return True


class Gatherer:
    """Takes frames. Keeps what a single look cannot give: the lag windows (Burrow's rules need a
    trend), the previous counts and histogram (for rates and the window p99), the DLQ position."""

    def __init__(self, settings, client_config: dict | None = None):
        self.settings = settings
        config = client_config or settings.kafka()
        self.lag = LagReader(config, settings.names, timeout_s=5.0)
        self.dlq = DeadLetterCounter(config, settings.names.topic(ORDERS_DLQ))
        self.prev_counts: tuple[float, dict[str, int]] | None = None
        self.prev_buckets: dict[str, dict[float, float]] | None = None
        self.prev_at: float | None = None

    def close(self) -> None:
        self.lag.close()

    def gather(self) -> Frame:
        now = time.monotonic()
        window = None if self.prev_at is None else now - self.prev_at
        self.prev_at = now
        parts: dict = {"window_s": window}
        parts.update(self._lag())
        parts.update(self._counts())
        parts.update(self._dead_letters())
        parts.update(self._stages())
        parts.update(self._stuck())
        return Frame(taken_at=time.time(), pipeline=self.settings.prefix.rstrip(".") or "main",
                     **parts)

    def _lag(self) -> dict:
        try:
            # this pipeline's groups only: with no prefix, every test's and bench's would match
            mine = {self.settings.names.group(w) for w in GROUPS}
            self.lag.sample([g for g in self.lag.groups(prefix=self.settings.prefix) if g in mine])
            report = self.lag.report()
        except (LagError, KafkaException) as e:
            return {"groups_why": f"Kafka at {self.settings.bootstrap}: {_why(e)}"}
        oldest: dict[str, float | None] = {}
        for p in report.partitions:
            if p.lag:
                seen = oldest.get(p.group, 0.0)
                oldest[p.group] = None if seen is None or p.lag_seconds is None \
                    else max(seen, p.lag_seconds)
        rows = [GroupRow(g.group, g.status, g.lag, g.members, oldest.get(g.group, 0.0))
                for g in report.groups]
        # the worst first: that is where an incident is
        rows.sort(key=lambda r: (-STATUSES.index(r.status) if r.status in STATUSES else 0, r.group))
        under = sum(n for t, n in report.under_replicated.items()
                    if t.startswith(self.settings.prefix))
        return {"groups": tuple(rows), "under_replicated": under}

    def _counts(self) -> dict:
        try:
            with closing(connect(self.settings, "orders")) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM orders")
                placed = cur.fetchone()[0]
                cur.execute("SELECT status, count(*) FROM order_status GROUP BY status")
                by_status = dict(cur.fetchall())
        except psycopg2.Error as e:
            why = f"orders database: {_why(e)}"
            return {"counts_why": why, "rates_why": why}
        counts = {"placed": placed, "pending": by_status.get("PENDING", 0),
                  # every committed order, shipped yet or not, as `orderbus report` counts it
                  "confirmed": by_status.get("CONFIRMED", 0) + by_status.get("SHIPPED", 0),
                  "rejected": by_status.get("REJECTED", 0),
                  "shipped": by_status.get("SHIPPED", 0)}
        out: dict = {"counts": counts}
        now, prev = time.monotonic(), self.prev_counts
        self.prev_counts = (now, counts)
        if prev is None:
            out["rates_why"] = "first sample; rates need two counts"
        else:
            dt = max(now - prev[0], 1e-3)
            out["rates"] = {k: max(0.0, (counts[k] - prev[1][k]) / dt) for k in OUTCOMES}
        out.update(self._in_doubt())
        return out

    def _in_doubt(self) -> dict:
        held: set[str] = set()
        for service in PARTICIPANT_DATABASES:
            try:
                with closing(connect(self.settings, service)) as conn, conn.cursor() as cur:
                    cur.execute("SELECT order_id FROM holds WHERE state = 'held'")
                    held.update(r[0] for r in cur.fetchall())
            except psycopg2.Error as e:
                return {"in_doubt_why": f"{service} database: {_why(e)}"}
        return {"in_doubt": len(held)}

    def _dead_letters(self) -> dict:
        try:
            exact = self.dlq.refresh()
        except KeyError:
            return {"dead_letters": 0}       # no dead-letter topic yet: none written
        except (KafkaException, RuntimeError) as e:
            return {"dead_letters_why": f"{self.dlq.topic}: {_why(e)}"}
        return {"dead_letters": self.dlq.count, "dead_letters_exact": exact,
                "dead_letters_by_reason": dict(self.dlq.by_reason)}

    def _scrape_trackers(self) -> tuple[dict[str, dict[float, float]], list[int]]:
        """Every tracker histogram on the metrics ports, summed over instances."""
        summed: dict[str, dict[float, float]] = {}
        ports = []
        first = self.settings.metrics_port
        for port in range(first, first + METRICS_PORTS):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=SCRAPE_TIMEOUT_S) as r:
                    text = r.read().decode()
                stages = parse_stage_buckets(text)
            except (OSError, ValueError):    # nothing there, not HTTP, not Prometheus text
                continue
            if stages is None:
                continue
            ports.append(port)
            for stage, buckets in stages.items():
                mine = summed.setdefault(stage, {})
                for le, n in buckets.items():
                    mine[le] = mine.get(le, 0.0) + n
        return summed, ports

    def _stages(self) -> dict:
        first = self.settings.metrics_port
        if not first:
            return {"stages_why": "tracker not reachable: metrics are off "
                                  "(ORDERBUS_METRICS_PORT=0)"}
        buckets, ports = self._scrape_trackers()
        prev, self.prev_buckets = self.prev_buckets, buckets
        if not ports:
            return {"stages_why": f"tracker not running (no tracker metrics on 127.0.0.1:"
                                  f"{first}-{first + METRICS_PORTS - 1})"}
        order = {s: i for i, s in enumerate((*STAGES, END_TO_END))}
        rows = []
        for stage in sorted(buckets, key=lambda s: (order.get(s, len(order)), s)):
            now = buckets[stage]
            before = (prev or {}).get(stage, {})
            delta = {le: n - before.get(le, 0.0) for le, n in now.items()}
            if prev is None or any(v < 0 for v in delta.values()):
                delta = {} if prev is None else now     # first look, or the tracker restarted
            rows.append(StageRow(stage, int(delta.get(math.inf, 0)), p99(delta) if delta else None,
                                 p99(now)))
        source = ", ".join(f"127.0.0.1:{p}" for p in ports)
        return {"stages": tuple(rows), "stages_source": source}

    def _stuck(self) -> dict:
        try:
            snap = snapshot.read(self.settings)
        except snapshot.SnapshotError as e:
            return {"stuck_why": str(e)}
        # the same cut as `orderbus stuck` by default
        stuck = [s for s in snap["stuck"] if s["seconds_past_deadline"] > GRACE_S]
        rows = tuple(StuckRow(s["order_id"], s["stage"], s["waiting_for"],
                              s["seconds_past_deadline"]) for s in stuck[:STUCK_SHOWN])
        return {"stuck": rows, "stuck_total": len(stuck),
                "snapshot_age_s": max(0.0, time.time() - snap["written_at_ms"] / 1000)}

