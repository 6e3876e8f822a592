"""`orderbus bench`: end-to-end throughput and latency, from publish to final status
(SHIPPED or REJECTED) as a reader of orders.status sees it, in a sandbox on the local cluster."""
from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections import Counter

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from infra.kafka.cluster import pidfile
from infra.procs import read_pid
from orderbus.lab.sandbox import Sandbox
from orderbus.lab.watch import TopicWatcher
from orderbus.ops.generate import order_body
from orderbus.ops.supervise import Supervisor
from orderbus.ops.wait import until
from topics.catalogue import ALL, ORDERS_DLQ
from topics.lag import LagError, LagReader
from topics.read import read
from workers.main import PIPELINE
from workers.tracker.stages import SOURCES as TRACKER_SOURCES

FINAL = ("SHIPPED", "REJECTED")
SOURCE_PARTITIONS = sum(t.partitions for t in TRACKER_SOURCES)


class StatusWatcher(TopicWatcher):
    """When each order's decision and final status became visible."""

    def __init__(self, settings, topic: str):
        super().__init__(settings, topic)
        self.final: dict[str, tuple[float, str]] = {}
        self.final_made: dict[str, float] = {}   # the final status record's produce time
        self.decided: dict[str, float] = {}
        self.reasons: dict[str, str | None] = {}

    def seen(self, msg, now: float) -> None:
        # the workers validated it already; a plain parse keeps the load generator light
        event = json.loads(msg.value())
        status, oid = event["status"], event["order_id"]
        if status in FINAL:
            self.final.setdefault(oid, (now, status))
            self.final_made.setdefault(oid, made_at(msg))
        if status == "REJECTED":
            self.reasons.setdefault(oid, event.get("reason"))
        if status in ("CONFIRMED", "REJECTED"):
            self.decided.setdefault(oid, now)


def made_at(msg) -> float:
    """When a record was produced (its CreateTime), in seconds of the wall clock: every worker
    sets it on this machine's clock, when it produces the record."""
    return msg.timestamp()[1] / 1000


class TxLogWatcher(TopicWatcher):
    """When each order's transaction start, votes and decision were produced on tx.log."""

    MARKS = {"TxBegun": "begun", "Voted": "votes", "Decided": "decided"}

    def __init__(self, settings, topic: str):
        super().__init__(settings, topic)
        self.seen_at: dict[str, dict] = {}

    def seen(self, msg, now: float) -> None:
        mark = self.MARKS.get(dict(msg.headers() or ()).get("type", b"").decode())
        if mark == "votes":       # every vote, a redelivered one too: see hop_latencies
            self.seen_at.setdefault(json.loads(msg.value())["order_id"], {}).setdefault(
                "votes", []).append(made_at(msg))
        elif mark:
            self.seen_at.setdefault(json.loads(msg.value())["order_id"], {}).setdefault(
                mark, made_at(msg))


def hop_latencies(sent: dict[str, float], tx: dict[str, dict],
                  final: dict[str, float]) -> dict[str, dict[str, float]]:
    """p50/p99 ms of each step an order takes, from when one step's output was produced to when
    the next one's was, all on the wall clock: intake (publish -> TxBegun), participants (-> the
    last vote before the decision: the one it awaited), coordinator (-> Decided), final status
    (-> SHIPPED or REJECTED). Each step produced its output after reading the step before's, so
    no step is negative; times of reading would be, two watchers reading apart."""
    steps: dict[str, list[float]] = {"intake": [], "participants": [], "coordinator": [],
                                     "final_status": []}
    for oid, t_sent in sent.items():
        at = tx.get(oid, {})
        if "begun" not in at or "decided" not in at or oid not in final:
            continue        # not seen whole
        awaited = [t for t in at.get("votes", ()) if t <= at["decided"]]
        if not awaited:
            continue        # decided by its deadline: no vote to split at
        chain = (t_sent, at["begun"], max(awaited), at["decided"], final[oid])
        for name, a, b in zip(steps, chain, chain[1:]):
            steps[name].append((b - a) * 1000)
    return {name: {"p50_ms": round(percentile(v, 0.50), 1), "p99_ms": round(percentile(v, 0.99), 1),
                   "orders": len(v)} for name, v in steps.items()}


class RssSampler(threading.Thread):
    """Peak RSS and CPU seconds of every worker process, sampled from /proc."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, sup):
        super().__init__(daemon=True)
        self.sup, self.peak, self.cpu, self.running = sup, {}, {}, True

    def run(self):
        while self.running:
            for c in self.sup.children:
                if c.proc and c.proc.poll() is None:
                    try:
                        with open(f"/proc/{c.proc.pid}/status") as f:
                            kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
                        with open(f"/proc/{c.proc.pid}/stat") as f:
                            fields = f.read().rsplit(")", 1)[1].split()
                    except (OSError, StopIteration):
                        continue
                    self.peak[c.label] = max(self.peak.get(c.label, 0), kb / 1024)
                    self.cpu[c.label] = (int(fields[11]) + int(fields[12])) / self.TICK
            time.sleep(0.5)


class TrackerLag(threading.Thread):
    """The order tracker's consumer lag, in messages and in seconds (the age of its oldest
    unconsumed message, as `orderbus lag` reports it), sampled every second."""

    def __init__(self, settings):
        super().__init__(daemon=True)
        self.reader = LagReader(settings.kafka(), settings.names)
        self.group = settings.names.group("tracker")
        self.samples: list[tuple[float, int, float]] = []    # (monotonic, messages, seconds)
        self.running = True

    def run(self):
        while self.running:
            try:
                self.reader.sample([self.group])
                parts = self.reader.report().partitions
            except LagError:
                parts = []
            # every source partition, once the group has committed for each of them
            if len(parts) == SOURCE_PARTITIONS and all(
                    p.lag is not None and p.lag_seconds is not None for p in parts):
                self.samples.append((time.monotonic(), sum(p.lag for p in parts),
                                     max(p.lag_seconds for p in parts)))
            time.sleep(1.0)

    def stop(self) -> None:
        self.running = False
        self.join(5)
        self.reader.close()

    def caught_up_after(self, t: float) -> float | None:
        """Seconds from `t` until a sample showed nothing older than a second unconsumed."""
        return next((round(ts - t, 1) for ts, _, s in self.samples if ts >= t and s <= 1.0), None)

    def summary(self, t0: float, last: float) -> dict:
        during = [(m, s) for ts, m, s in self.samples if t0 <= ts <= last]
        return {"max_lag": max((m for m, _ in during), default=None),
                "max_lag_s": max((s for _, s in during), default=None),
                "caught_up_s": self.caught_up_after(last)}


def _end_offsets(settings, topics: list[str]) -> dict[str, dict[int, int]]:
    admin = AdminClient(settings.kafka())
    meta = admin.list_topics(timeout=30).topics
    consumer = Consumer(settings.kafka(**{"group.id": f"{settings.prefix}bench", "log_level": 3}))
    try:
        return {t: {p: consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                    for p in meta[t].partitions} for t in topics}
    finally:
        consumer.close()


def records_by_type(settings, starts: dict[str, dict[int, int]]) -> dict[str, int]:
    """Records written to each pipeline topic since `starts`, by topic and event type."""
    counts: Counter = Counter()
    for topic, offsets in starts.items():
        short = topic[len(settings.prefix):].rsplit(".v", 1)[0]
        for msg in read(settings.kafka(), topic, offsets, timeout_s=120, committed=False):
            kind = dict(msg.headers() or ()).get("type", b"").decode() or "other"
            counts[f"{short}:{kind}"] += 1
    return dict(sorted(counts.items()))


def broker_cpu_s(settings) -> float:
    """CPU seconds the local brokers have used so far (0 where their pids are unknown)."""
    layout, total = settings.layout(), 0.0
    for node in layout.nodes:
        try:
            with open(f"/proc/{read_pid(pidfile(layout, node))}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / RssSampler.TICK
        except (OSError, TypeError, ValueError):
            pass
    return total


def groups_ready(settings, workers) -> bool:
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else 0.0


def bench(settings, orders: int = 5000, rate: float | None = None, hot: bool = False,
          instances: int = 1, timeout_s: float = 300, verify: bool = False, tracker: bool = False,
          tracker_cold: bool = False, hops: bool = False, log=print) -> dict:
    counts = {w: instances for w in PIPELINE + (("tracker",) if tracker else ())}
    with Sandbox(settings, counts=counts) as sb:
        customers = [f"c{i:04d}" for i in range(200)]
        skus = ["hot"] if hot else [f"sku-{i:03d}" for i in range(100)]
        stock = {"hot": orders // 2} if hot else {s: orders for s in skus}
        sb.seed(stock=stock, accounts={c: 10**12 for c in customers})
        watcher = StatusWatcher(sb.settings, sb.status_topic)
        watcher.start()
        tx = TxLogWatcher(sb.settings, sb.tx_log_topic) if hops else None
        if tx:
            tx.start()
        started = time.monotonic()
        sb.start()
        rss = RssSampler(sb.sup)
        rss.start()
        log(f"sandbox {sb.tag}: {sum(counts.values())} worker processes; warming up")
        _wait(lambda: groups_ready(sb.settings, PIPELINE), 120, "every group's assignment")
        # enough to touch every partition of every topic, so the timed run meets no first-use
        # costs (metadata, transaction partition registration, cold code paths)
        warm = [f"warm-{i}" for i in range(300)]
        for i, oid in enumerate(warm):
            sb.publisher.publish(order_body(oid, customers[i % 200], [(skus[i % len(skus)], 1, 100)]))
        sb.publisher.flush(30)
        _wait(lambda: all(o in watcher.final for o in warm), 90, "warm-up orders")
        _wait(lambda: groups_ready(sb.settings, PIPELINE), 120, "every group's assignment")
        ready_s = time.monotonic() - started
        topics = [sb.settings.names.topic(t) for t in ALL if t is not ORDERS_DLQ]
        starts = _end_offsets(sb.settings, topics)
        cpu0 = broker_cpu_s(sb.settings)
        lag = TrackerLag(sb.settings) if tracker else None
        if lag:
            lag.start()
        # encoded (and validated) up front: the load generator should not eat the machine
        batch = []
        for i in range(orders):
            line = (skus[0] if hot else skus[(i * 7) % len(skus)], 1, 100 + i % 50)
            value, headers, event = sb.publisher.encode(order_body(f"b-{i}", customers[i % 200],
                                                                   [line]))
            batch.append((event.order_id, value, headers))
        sent: dict[str, float] = {}
        sent_wall: dict[str, float] = {}     # for the steps: see hop_latencies
        log(f"timed run starts at {time.strftime('%H:%M:%S')}")
        t0 = time.monotonic()
        for i, (oid, value, headers) in enumerate(batch):
            if rate:
                ahead = t0 + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            sent[oid], sent_wall[oid] = time.monotonic(), time.time()
            sb.publisher.publish_raw(oid.encode(), value, headers=headers)
            if i % 1000 == 999:
                log(f"  published {i + 1}/{orders}; final so far {len(watcher.final) - len(warm)}")
        sb.publisher.flush(60)
        publish_s = time.monotonic() - t0
        # past the time limit, what was measured by then is the result: an overloaded pipeline
        # is reported as such, with its backlog, not as an error
        complete = _wait(lambda: all(o in watcher.final for o in sent), timeout_s,
                         "benchmark orders", raise_=False)
        ended = time.monotonic()
        done = [o for o in sent if o in watcher.final]
        broker_cpu = broker_cpu_s(sb.settings) - cpu0
        watcher.running = rss.running = False
        if tx:
            # a REJECTED status and its Decided commit together, on two topics read apart
            _wait(lambda: all("decided" in tx.seen_at.get(o, ()) for o in done), 30,
                  "the benchmark orders' decisions on tx.log")
            tx.running = False
        last = max((watcher.final[o][0] for o in done), default=ended)
        if lag:
            try:
                _wait(lambda: lag.caught_up_after(last) is not None, timeout_s,
                      "the tracker (its oldest unconsumed event still over 1 s old)")
            finally:
                lag.stop()
        checked = None
        if verify:
            from orderbus.ops.verify import verify as run_verify
            t1 = time.monotonic()
            found = run_verify(sb.settings, wait_s=60)
            checked = {"seconds": round(time.monotonic() - t1, 2), "orders": found["orders"],
                       "violations": len(found["violations"])}
        cold = (_tracker_cold(sb, len(sent) + len(warm), instances, timeout_s, log)
                if tracker_cold else None)
        lat = [(watcher.final[o][0] - sent[o]) * 1000 for o in done] or [0.0]
        tenth = max(1, len(lat) // 10)
        by_tenth = [round(percentile(lat[i:i + tenth], 0.99)) for i in range(0, len(lat), tenth)]
        dec = [(watcher.decided[o] - sent[o]) * 1000 for o in sent if o in watcher.decided]
        outcome = [watcher.final[o][1] for o in done]
        reasons = Counter(watcher.reasons.get(o) for o in done if watcher.final[o][1] == "REJECTED")
        records = records_by_type(sb.settings, starts)
        return {
            "orders": orders, "hot": hot, "offered_rate": rate, "instances": instances,
            "ready_s": round(ready_s, 1), "complete": complete, "completed": len(done),
            "backlog": len(sent) - len(done),
            "orders_per_s": round(len(done) / (last - t0), 1) if last > t0 else 0.0,
            "publish_s": round(publish_s, 2), "total_s": round(last - t0, 2),
            "p50_ms": round(percentile(lat, 0.50), 1), "p99_ms": round(percentile(lat, 0.99), 1),
            "max_ms": round(max(lat), 1), "mean_ms": round(statistics.fmean(lat), 1),
            "p99_ms_by_tenth": by_tenth,
            "decided_p50_ms": round(percentile(dec, 0.50), 1),
            "decided_p99_ms": round(percentile(dec, 0.99), 1),
            "confirmed": outcome.count("SHIPPED"), "rejected": outcome.count("REJECTED"),
            "rejected_by_reason": {str(k): v for k, v in sorted(reasons.items(), key=str)},
            "records_per_order": round(sum(records.values()) / max(1, len(done)), 2),
            "records_by_type": {k: round(v / max(1, len(done)), 3) for k, v in records.items()},
            "records_per_s": round(sum(records.values()) / max(1e-9, last - t0), 1),
            "broker_cpu_s_per_1000": round(broker_cpu * 1000 / max(1, len(done)), 2),
            "rss_mb": {k: round(v, 1) for k, v in sorted(rss.peak.items())},
            "cpu_s": {k: round(v, 1) for k, v in sorted(rss.cpu.items())},
            "worker_restarts": sum(c.restarts for c in sb.sup.children),
            "verify": checked,
            "tracker": lag.summary(t0, last) if lag else None,
            "tracker_cold": cold,
            "hops": hop_latencies(sent_wall, tx.seen_at, watcher.final_made) if tx else None,
        }


def _tracker_cold(sb, orders: int, instances: int, timeout_s: float, log) -> dict:
    """The tracker's speed alone: stop the pipeline, start trackers on everything the run wrote
    and time them until nothing older than a second is left unconsumed (start-up included)."""
    sb.sup.stop()
    sup = Supervisor(sb.settings, {"tracker": instances}, env=sb.env, log_dir=sb.sup.log_dir,
                     log=lambda *_: None)
    lag = TrackerLag(sb.settings)
    log(f"pipeline stopped; {instances} tracker instance(s) start on the run's events")
    t0 = time.monotonic()
    sup.start()
    lag.start()
    try:
        _wait(lambda: lag.caught_up_after(t0) is not None, timeout_s, "the cold tracker")
    finally:
        lag.stop()
        sup.stop()
    return {"orders": orders, "instances": instances, "seconds": lag.caught_up_after(t0)}


def _wait(cond, timeout_s: float, what: str, raise_: bool = True) -> bool:
    if until(cond, timeout_s, poll_s=0.1):
        return True
    if raise_:
        raise TimeoutError(f"{what}: not done after {timeout_s:.0f}s")
    return False


def render(r: dict) -> str:
    rss = ", ".join(f"{k} {v:.0f}" for k, v in r["rss_mb"].items())
    types = ", ".join(f"{k} {v}" for k, v in r["records_by_type"].items())
    return (f"{r['orders']} orders{' (flash sale: one SKU)' if r['hot'] else ''}, offered "
            f"{r['offered_rate'] or 'max'}/s, {r['instances']} instance(s) per worker; ready "
            f"after {r['ready_s']} s\n"
            + ("" if r["complete"] else
               f"  INCOMPLETE  {r['completed']} of {r['orders']} final by the time limit; "
               f"{r['backlog']} left\n")
            + f"  throughput  {r['orders_per_s']} orders/s (publish to last final status "
            f"{r['total_s']} s)\n"
            f"  latency     p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms "
            f"(to SHIPPED/REJECTED); decided p99 {r['decided_p99_ms']} ms\n"
            f"  outcome     {r['confirmed']} confirmed+shipped, {r['rejected']} rejected "
            f"{r['rejected_by_reason']}\n"
            f"  records     {r['records_per_order']} per order, {r['records_per_s']}/s: {types}\n"
            f"  brokers     {r['broker_cpu_s_per_1000']} CPU s per 1,000 orders\n"
            f"  peak RSS MB {rss}\n"
            f"  CPU seconds " + ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_s"].items())
            + (f"\n  verify      {r['verify']['orders']} orders in {r['verify']['seconds']} s, "
               f"{r['verify']['violations']} violations" if r.get("verify") else "")
            + (f"\n  tracker     lag max {r['tracker']['max_lag']} messages / "
               f"{r['tracker']['max_lag_s']} s during the run; caught up "
               f"{r['tracker']['caught_up_s']} s after the last order" if r.get("tracker") else "")
            + (f"\n  tracker     alone, from a cold start: the events of "
               f"{r['tracker_cold']['orders']} orders folded by {r['tracker_cold']['instances']} "
               f"instance(s) in {r['tracker_cold']['seconds']} s"
               if r.get("tracker_cold") else "")
            + ("".join(f"\n  {name:<14}p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms"
                       for name, h in r["hops"].items()) if r.get("hops") else ""))


def to_json(r: dict) -> str:
    return json.dumps(r, indent=2)
