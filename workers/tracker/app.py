"""The tracker's faust app: one agent over orders.placed, tx.log and orders.status folds each event
into `order_to_stages` (pure core in stages.py), per-stage latency histograms and one-minute
windows; a timer publishes stuck orders (gauge + snapshot file for `orderbus stuck`).

The app is built by a function, not at module level as faust's examples do: its topic and group
names carry the prefix from the settings, which exist only once the entry point has read them.
It stays one module of some 380 lines because the agent, its timer, the tables and the changelog
topics all hang off the one app object faust builds; the fold itself is stages.py.
"""

from __future__ import annotations

import logging
import ssl
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import faust
from confluent_kafka.admin import AdminClient
from faust.types import EventT, StreamT

from schemas import codec
from schemas.errors import DeadLetter
from topics.admin import ensure, replication_for
from topics.catalogue import (
    ORDERS_PLACED,
    TRACKER_CHANGELOGS,
    TRACKER_STAGES,
    TRACKER_WINDOWS_KEPT,
)
from topics.partitioner import partition_for
from workers.runtime.clients import HEARTBEAT_MS, SESSION_TIMEOUT_MS
from workers.runtime.settings import TRACKER_GRACE_S, TRACKER_RETAIN_S, Settings
from workers.tracker import snapshot
from workers.tracker.metrics import TrackerMetrics
from workers.tracker.stages import (
    SOURCES,
    UNFOLLOWED,
    OrderStages,
    advance,
    observe,
    stuck,
    window_counts,
)
from workers.tracker.transport import ReadCommittedApp

log = logging.getLogger(__name__)

# producers of the public topic may send no headers at all (as intake accepts)
DEFAULT_TYPE = {ORDERS_PLACED.name: "OrderPlaced"}
UNFOLLOWED_HEADERS = {t.encode() for t in UNFOLLOWED}
WINDOW_S = 60
SNAPSHOT_EVERY_S = 2.0
STUCK_LISTED = 1000  # the snapshot lists the most overdue; the gauge counts all


def ensure_changelogs(settings: Settings, timeout_s: float = 30.0) -> int:
    """Create the tables' changelog topics before faust starts, as every orderbus topic is made
    (topics/admin.py: RF 3, min.insync.replicas 2); return their replication factor.

    faust would create them itself, but its consumer joins the group with a metadata snapshot
    taken before a new topic is visible and keeps "0 partitions" for it until the next rebalance:
    every write to a table then fails with PartitionsMismatch."""
    topics = tuple(TRACKER_CHANGELOGS.values())
    ensure(settings.kafka(), topics, timeout_s, names=settings.names, brokers=settings.brokers)
    admin = AdminClient(settings.kafka(log_level=3))
    deadline = time.monotonic() + timeout_s
    while not all(
        _partitions(admin, settings.names.topic(t)) == settings.partitions for t in topics
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"changelog topics not visible after {timeout_s:.0f}s")
        time.sleep(0.2)
    up = len(admin.list_topics(timeout=timeout_s).brokers)
    return replication_for(max(up, settings.brokers), TRACKER_STAGES)[0]


def _partitions(admin: AdminClient, topic: str) -> int:
    meta = admin.list_topics(topic, timeout=10).topics.get(topic)
    return 0 if meta is None or meta.error is not None else len(meta.partitions)


@dataclass
class Tracker:
    app: faust.App
    settings: Settings
    metrics: TrackerMetrics
    instance: int = 0
    grace_s: float = TRACKER_GRACE_S
    # the orders not yet shipped or rejected, so the view need not scan every order it has seen;
    # rebuilt from the table after faust restores it (a restart, a rebalance)
    open_orders: set[str] = field(default_factory=set)
    rescan: bool = True
    retain_s: float = TRACKER_RETAIN_S
    # per partition, (time of an order's latest event, order id), oldest first, for the orders
    # that may expire
    recent: dict[int, deque[tuple[int, str]]] = field(default_factory=lambda: defaultdict(deque))
    # per partition, the latest event time read from each source topic: the topics are read
    # out of step (a catch-up reads orders.placed far ahead of tx.log), and an order may expire
    # only once all three have passed it, or a late event of it would bring it back
    clocks: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def declare(self) -> None:
        names = self.settings.names
        self.kind = {names.topic(t): t.name for t in SOURCES}  # deployed name -> catalogue name
        # internal=False: faust never creates or alters these (it declares internal topics only)
        self.source = self.app.topic(
            *self.kind,
            partitions=self.settings.partitions,
            internal=False,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        # keyed by order id, like every source topic, so partition p's events update partition
        # p of the changelog and nothing needs repartitioning
        # (keys and values in JSON: faust's table default)
        self.order_to_stages = self.app.Table(
            "order_to_stages", partitions=self.settings.partitions, key_type=str
        )
        # keys "p<partition>|<counter>": a counter fed from one source partition only, so its
        # changelog partition holds the whole truth for it (faust restores per partition)
        self.minute_to_counts = (
            self.app.Table(
                "minute_to_counts",
                default=int,
                partitions=self.settings.partitions,
                key_type=str,
            )
            .tumbling(WINDOW_S, expires=timedelta(minutes=TRACKER_WINDOWS_KEPT))
            .relative_to_stream()
        )
        self.order_to_stages.on_recover(self._recovered)
        self.app.agent(self.source, name="track")(self._track)
        self.app.timer(SNAPSHOT_EVERY_S)(self._publish)

    # -- the stream
    async def _track(self, stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                self.handle(event)
            except Exception:  # a bug must not stop the view of every other order
                log.exception(
                    "skipping %s[%s]@%s",
                    event.message.topic,
                    event.message.partition,
                    event.message.offset,
                )
                self.metrics.undecodable.labels(
                    self.kind.get(event.message.topic, "?"), "tracker_error"
                ).inc()

    def handle(self, event: EventT[bytes]) -> None:
        msg = event.message
        kind = self.kind[msg.topic]
        self.metrics.consumed.labels(kind).inc()
        at_ms = round(msg.timestamp * 1000)
        clock = self.clocks[msg.partition]
        clock[kind] = max(clock.get(kind, at_ms), at_ms)
        self._expire(msg.partition)
        if dict(msg.headers or ()).get("type") in UNFOLLOWED_HEADERS:
            return
        try:
            # faust types headers as whatever a producer may pass (a mapping too); a consumed
            # record's, from aiokafka, are always (name, value) pairs
            decoded = codec.decode(
                event.value,
                msg.headers,  # type: ignore[arg-type]
                DEFAULT_TYPE.get(kind),
            )
        except DeadLetter as e:
            self.metrics.undecodable.labels(kind, e.reason).inc()
            log.warning(
                "skipping undecodable %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, e
            )
            return
        obs = observe(decoded, at_ms)
        if obs is None:
            return
        raw = self.order_to_stages.get(obs.order_id)
        old = None if raw is None else OrderStages.from_dict(raw)
        new, measured = advance(old, obs)
        if new is old:
            return  # a stage seen before: no write, no changelog message
        self.order_to_stages[obs.order_id] = new.to_dict()
        if new.terminal:
            self.open_orders.discard(obs.order_id)
        else:
            self.open_orders.add(obs.order_id)
        for stage, ms in measured:
            self.metrics.stage_ms.labels(stage).observe(ms)
        for name, amount in window_counts(obs, new):
            self.minute_to_counts[f"p{msg.partition}|{name}"] += amount
        if new.expirable:
            self.recent[msg.partition].append((new.last_ms, obs.order_id))

    def _expire(self, partition: int) -> None:
        """Drop this partition's expirable orders whose last event is retain_s behind what has
        been read of every source topic (event time, so folding history from the start stays
        bounded too). Only while handling an event of the same partition: faust writes the
        deletion to the changelog partition of the current event."""
        clock = self.clocks[partition]
        if len(clock) < len(SOURCES):
            return
        queue, cutoff = self.recent[partition], min(clock.values()) - self.retain_s * 1000
        while queue and queue[0][0] < cutoff:
            _, order_id = queue.popleft()
            raw = self.order_to_stages.get(order_id)
            if raw is None:
                continue
            state = OrderStages.from_dict(raw)
            if state.expirable and state.last_ms < cutoff:  # else touched since: queued again
                del self.order_to_stages[order_id]
                self.open_orders.discard(order_id)

    # -- the view
    async def _recovered(self) -> None:
        self.rescan = True

    def _open(self) -> list[OrderStages]:
        table = self.order_to_stages
        if self.rescan:
            self.rescan = False
            self.open_orders, by_partition = set(), defaultdict(list)
            for k, raw in table.items():
                state = OrderStages.from_dict(raw)
                if not state.terminal:
                    self.open_orders.add(k)
                if state.expirable:
                    by_partition[partition_for(k.encode("utf-8"), self.settings.partitions)].append(
                        (state.last_ms, k)
                    )
            self.recent = defaultdict(
                deque, {p: deque(sorted(entries)) for p, entries in by_partition.items()}
            )
        found = []
        for order_id in list(self.open_orders):
            raw = table.get(order_id)
            stages = None if raw is None else OrderStages.from_dict(raw)
            if stages is None or stages.terminal:  # finished, or no longer in the table
                self.open_orders.discard(order_id)
            else:
                found.append(stages)
        return found

    async def _publish(self) -> None:
        now_ms = int(time.time() * 1000)
        orders = self._open()
        open_n, done_n = len(orders), len(self.order_to_stages) - len(orders)
        overdue = [
            s
            for s in (stuck(o, now_ms, 0, self.settings.deadline_ms) for o in orders)
            if s is not None
        ]
        overdue.sort(key=lambda s: -s.seconds_past_deadline)
        self.metrics.stuck.set(sum(1 for s in overdue if s.seconds_past_deadline > self.grace_s))
        self.metrics.orders_tracked.labels("open").set(open_n)
        self.metrics.orders_tracked.labels("done").set(done_n)
        minutes = self._minutes()
        self._last_minute_gauges(minutes, now_ms)
        # every order past its deadline (grace 0), so `orderbus stuck --grace` can choose
        snapshot.write(
            snapshot.snapshot_path(self.settings, self.instance),
            {
                "written_at_ms": now_ms,
                "grace_s": self.grace_s,
                "open": open_n,
                "done": done_n,
                "past_deadline": len(overdue),
                "stuck": [
                    {
                        "order_id": s.order_id,
                        "stage": s.stage,
                        "waiting_for": s.waiting_for,
                        "seconds_past_deadline": s.seconds_past_deadline,
                    }
                    for s in overdue[:STUCK_LISTED]
                ],
                "minutes": minutes,
            },
        )

    def _minutes(self) -> list[dict[str, Any]]:
        """The windows summed over partitions: [{start_ms, counts: {counter: n}}], oldest first."""
        by_start: dict[int, dict[str, int]] = {}
        for (key, (start, _end)), n in self.minute_to_counts.table.data.items():
            counts = by_start.setdefault(int(start * 1000), {})
            name = key.split("|", 1)[1]
            counts[name] = counts.get(name, 0) + n
        return [{"start_ms": k, "counts": by_start[k]} for k in sorted(by_start)]

    def _last_minute_gauges(self, minutes: list[dict[str, Any]], now_ms: int) -> None:
        last = (now_ms // (WINDOW_S * 1000) - 1) * WINDOW_S * 1000
        counts: dict[str, int] = next((m["counts"] for m in minutes if m["start_ms"] == last), {})
        self.metrics.last_minute_orders.set(counts.get("orders", 0))
        for name, n in counts.items():
            kind, _, label = name.partition(":")
            if kind == "revenue_cents":
                self.metrics.last_minute_revenue.labels(label).set(n)
            elif kind == "rejected":
                self.metrics.last_minute_rejections.labels(label).set(n)


class MissingCodec(RuntimeError):
    pass


def check_codecs() -> None:
    """Every pipeline producer compresses with lz4; aiokafka decompresses it only with cramjam
    installed, and without it faust's consumer thread dies on the first compressed batch."""
    from aiokafka.codec import has_lz4

    if not has_lz4():
        raise MissingCodec("aiokafka cannot read lz4 batches: install `aiokafka[lz4]` (cramjam)")


def credentials(settings: Settings) -> faust.SASLCredentials | None:
    """aiokafka's view of `Settings.kafka()`: SCRAM over TLS, the brokers checked against the CA."""
    if settings.security == "plaintext":
        return None
    user, password = settings.credentials(settings.principal)
    return faust.SASLCredentials(
        username=user,
        password=password,
        mechanism="SCRAM-SHA-512",
        ssl_context=ssl.create_default_context(cafile=settings.ca_file),
    )


def build(
    settings: Settings,
    instance: int = 0,
    metrics: TrackerMetrics | None = None,
    grace_s: float = TRACKER_GRACE_S,
    retain_s: float = TRACKER_RETAIN_S,
) -> Tracker:
    check_codecs()
    rf = ensure_changelogs(settings)
    snapshot.tracker_dir(settings).mkdir(parents=True, exist_ok=True)  # faust makes one level
    app = ReadCommittedApp(
        settings.names.group("tracker"),
        broker="kafka://" + settings.bootstrap.replace(",", ";"),
        broker_client_id=f"{settings.names.group('tracker')}-{settings.instance_id(instance)}",
        broker_credentials=credentials(settings),
        # aiokafka's transactional offset commit fails on Kafka >= 3.7 (aiokafka #1004), and the
        # tracker decides nothing: a replayed event finds its stage already set
        processing_guarantee="at_least_once",
        # for any topic faust makes itself (the changelogs exist already); the pipeline's own
        # topics are never declared (internal=False)
        topic_replication_factor=rf,
        topic_partitions=settings.partitions,  # changelogs copartitioned with the sources
        topic_disable_leader=True,  # no leader-election topic: no on_leader timers
        store="memory://",  # rebuilt from the changelog at start
        datadir=str(snapshot.tracker_dir(settings) / f"data-{instance}"),
        table_standby_replicas=0,  # a view: one copy, recovered from the changelog
        consumer_auto_offset_reset="earliest",  # a new tracker folds history from the start
        # the workers' session, not faust's 60 s: a killed instance stays in the group for its
        # session, and its successor's join waits for it to go, shutdown included (aiokafka ends
        # a join in flight before it leaves), which kept a restarted tracker a minute from exiting
        broker_session_timeout=SESSION_TIMEOUT_MS / 1000,
        broker_heartbeat_interval=HEARTBEAT_MS / 1000,
        web_enabled=False,
        # table writes go to the changelogs in batches, not one produce request each
        producer_linger=0.05,
    )
    tracker = Tracker(
        app, settings, metrics or TrackerMetrics(), instance, grace_s, retain_s=retain_s
    )
    tracker.declare()
    return tracker


def run_tracker(settings: Settings, instance: int, metrics_port: int) -> int:
    """One tracker instance until SIGTERM (faust's worker stops cleanly on it)."""
    level = settings.log_level
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s tracker-{instance} %(levelname)s %(message)s",
    )
    metrics = TrackerMetrics()
    try:
        tracker = build(
            settings, instance, metrics, settings.tracker_grace_s, settings.tracker_retain_s
        )
    except MissingCodec as e:
        logging.getLogger(__name__).critical("cannot start: %s", e)
        return 3
    metrics.serve(metrics_port)
    worker = faust.Worker(
        tracker.app, loglevel=level, override_logging=False, redirect_stdouts=False, quiet=True
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as e:
        return int(e.code or 0)
    return 0
