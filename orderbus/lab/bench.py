"""`orderbus bench`: end-to-end throughput and latency, from publish to final status
(SHIPPED or REJECTED) as a reader of orders.status sees it, in a sandbox on the local cluster.
`bench` runs the phases in order (warm up, encode, publish, wait, read the figures); the readings
it takes are readings.py, and a sixth of its length is `render`."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import AdminClient

from orderbus.lab.ceiling import producer_ceiling
from orderbus.lab.readings import (
    RssSampler,
    StatusWatcher,
    TrackerLag,
    TxLogWatcher,
    broker_cpu_s,
    end_offsets,
    groups_ready,
    hop_latencies,
    own_cpu_s,
    postgres_cpu_s,
    records_by_type,
)
from orderbus.lab.sandbox import Sandbox
from orderbus.lab.stats import ms, percentile
from orderbus.ops.generate import order_body
from orderbus.ops.supervise import Supervisor
from orderbus.ops.verify import verify as run_verify
from orderbus.ops.wait import until
from topics.catalogue import ALL, ORDERS_DLQ
from topics.lag import backlog, group_reader
from workers.main import PIPELINE
from workers.runtime.settings import Settings

OPEN_DEADLINE_MS = 600_000


@dataclass(frozen=True)
class Plan:
    """What to run: `orderbus bench`'s options."""

    orders: int = 5000
    rate: float | None = None  # orders/s offered; None: as fast as they can be published
    hot: bool = False  # every order for one SKU (a flash sale)
    instances: int = 1  # of each worker
    timeout_s: float = 300
    verify: bool = False
    tracker: bool = False  # run the order tracker along, and time how far behind it is
    tracker_cold: bool = False  # then a fresh tracker over the whole history
    hops: bool = False  # split the latency at tx.log's steps
    open_: bool = False  # hold payment until every order is open, then release it
    ceiling: bool = False  # Kafka's own ProducerPerformance on the same cluster


@dataclass
class Rig:
    """The sandbox's instruments, running from before the warm-up."""

    watcher: StatusWatcher
    rss: RssSampler
    txlog: TxLogWatcher | None
    tracker_lag: TrackerLag | None
    skus: list[str]
    customers: list[str]
    warm: list[str]  # the warm-up orders
    ready_s: float  # sandbox start to every group assigned after the warm-up
    starts: dict[str, dict[int, int]]  # log ends before the timed run, to count its records
    broker_cpu0: float


@dataclass
class Timed:
    """The timed run: what was sent and when it was through."""

    sent: dict[str, float]  # order id -> monotonic time sent
    sent_wall: dict[str, float]  # order id -> wall-clock time sent
    t0: float
    publish_s: float
    opened: dict[str, Any] | None
    complete: bool  # every order final within the time limit
    ended: float
    done: list[str]  # the orders final by then
    cpu_used: dict[str, float]  # CPU seconds per process during the run
    broker_cpu: float
    last: float  # when the last order became final (`ended` if none did)


def bench(
    settings: Settings, plan: Plan = Plan(), log: Callable[[str], None] = print
) -> dict[str, Any]:
    counts = {w: plan.instances for w in PIPELINE + (("tracker",) if plan.tracker else ())}
    # --open: nothing may hold the orders back before the coordinator, nor abort them meanwhile
    deadline_ms, env = (
        (OPEN_DEADLINE_MS, {"ORDERBUS_INTAKE_MAX_BACKLOG": "0"}) if plan.open_ else (None, None)
    )
    with Sandbox(settings, counts=counts, deadline_ms=deadline_ms, env=env) as sb:
        log(f"sandbox {sb.tag}: {sum(counts.values())} worker processes; warming up")
        rig = _set_up(sb, plan)
        timed = _timed_run(sb, rig, plan, log)
        _settle(rig, timed, plan)
        return summarize(plan, _readings(sb, plan, rig, timed, log))


def _set_up(sb: Sandbox, plan: Plan) -> Rig:
    """Seed, start the workers and the instruments, and warm up."""
    customers = [f"c{i:04d}" for i in range(200)]
    skus = ["hot"] if plan.hot else [f"sku-{i:03d}" for i in range(100)]
    stock = {"hot": plan.orders // 2} if plan.hot else {s: plan.orders for s in skus}
    sb.seed(stock=stock, accounts={c: 10**12 for c in customers})
    watcher = StatusWatcher(sb.settings, sb.status_topic)
    watcher.start()
    txlog = TxLogWatcher(sb.settings, sb.tx_log_topic) if plan.hops else None
    if txlog:
        txlog.start()
    started = time.monotonic()
    sb.start()
    rss = RssSampler(sb.sup)
    rss.start()
    warm = _warm_up(sb, watcher, customers, skus)
    ready_s = time.monotonic() - started
    topics = [sb.settings.names.topic(t) for t in ALL if t is not ORDERS_DLQ]
    starts = end_offsets(sb.settings, topics)
    broker_cpu0 = broker_cpu_s(sb.settings)
    tracker_lag = TrackerLag(sb.settings) if plan.tracker else None
    if tracker_lag:
        tracker_lag.start()
    return Rig(
        watcher, rss, txlog, tracker_lag, skus, customers, warm, ready_s, starts, broker_cpu0
    )


def _timed_run(sb: Sandbox, rig: Rig, plan: Plan, log: Callable[[str], None]) -> Timed:
    """Publish the batch and wait, up to the time limit, for every order to be final."""
    watcher, warm = rig.watcher, rig.warm
    batch = _encoded(sb, plan.orders, plan.hot, rig.skus, rig.customers)
    payment = [c for c in sb.sup.children if c.name == "payment"] if plan.open_ else []
    for child in payment:
        sb.sup.hold(child)
    log(f"timed run starts at {time.strftime('%H:%M:%S')}")
    cpu_at_start = cpu_now(sb.settings, rig.rss)
    t0 = time.monotonic()
    sent, sent_wall = _publish(sb, batch, plan.rate, lambda: len(watcher.final) - len(warm), log)
    publish_s = time.monotonic() - t0
    opened = _open(sb, rig.rss, plan.timeout_s, log) if plan.open_ else None
    if opened:
        opened["orders"] = sum(1 for o in sent if o not in watcher.decided)
    for child in payment:
        sb.sup.release(child)
    # past the time limit, what was measured by then is the result: an overloaded pipeline
    # is reported as such, with its backlog, not as an error
    complete = until(lambda: all(o in watcher.final for o in sent), plan.timeout_s, 0.1)
    ended = time.monotonic()
    cpu_at_end = cpu_now(sb.settings, rig.rss)
    cpu_used = {k: v - cpu_at_start.get(k, 0.0) for k, v in cpu_at_end.items()}
    done = [o for o in sent if o in watcher.final]
    broker_cpu = broker_cpu_s(sb.settings) - rig.broker_cpu0
    watcher.running = rig.rss.running = False
    last = max((watcher.final[o][0] for o in done), default=ended)
    return Timed(
        sent, sent_wall, t0, publish_s, opened, complete, ended, done, cpu_used, broker_cpu, last
    )


def _settle(rig: Rig, timed: Timed, plan: Plan) -> None:
    """Let the readers that follow other topics catch up with the orders that were final."""
    txlog, tracker_lag = rig.txlog, rig.tracker_lag
    if txlog:
        # a REJECTED status and its Decided commit together, on two topics read apart
        until(
            lambda: all("decided" in txlog.seen_at.get(o, ()) for o in timed.done),
            30,
            0.1,
            "the benchmark orders' decisions on tx.log",
        )
        txlog.running = False
    if tracker_lag:
        try:
            until(
                lambda: tracker_lag.caught_up_after(timed.last) is not None,
                plan.timeout_s,
                0.1,
                "the tracker (its oldest unconsumed event still over 1 s old)",
            )
        finally:
            tracker_lag.stop()


@dataclass
class Readings:
    """Everything the result is made of, as plain values: `summarize` is pure over it."""

    ready_s: float
    timed: Timed
    final: dict[str, tuple[float, str]]  # order id -> (when final, status), as the watcher saw
    decided: dict[str, float]  # order id -> when decided
    reasons: dict[str, str | None]  # order id -> its status's reason
    records: dict[str, int]  # records the run wrote, by event type
    rss_peak: dict[str, float]  # MB per process
    rss_cpu: dict[str, float]  # CPU seconds per process, sandbox start to end
    restarts: int
    ceiling_rps: float | None = None
    verify: dict[str, float] | None = None
    tracker: dict[str, Any] | None = None
    tracker_cold: dict[str, Any] | None = None
    hops: dict[str, Any] | None = None


def _readings(
    sb: Sandbox, plan: Plan, rig: Rig, timed: Timed, log: Callable[[str], None]
) -> Readings:
    """The readings after the run: the optional ones (verify, the cold tracker, the ceiling)
    taken now."""
    watcher = rig.watcher
    r = Readings(
        ready_s=rig.ready_s,
        timed=timed,
        final=dict(watcher.final),
        decided=dict(watcher.decided),
        reasons=dict(watcher.reasons),
        records=records_by_type(sb.settings, rig.starts),
        rss_peak=dict(rig.rss.peak),
        rss_cpu=dict(rig.rss.cpu),
        restarts=sum(c.restarts for c in sb.sup.children),
    )
    if rig.tracker_lag:
        r.tracker = rig.tracker_lag.summary(timed.t0, timed.last)
    if rig.txlog:
        r.hops = hop_latencies(timed.sent_wall, rig.txlog.seen_at, watcher.final_made)
    if plan.verify:
        r.verify = _verified(sb)
    if plan.tracker_cold:
        history = len(timed.sent) + len(rig.warm)
        r.tracker_cold = _tracker_cold(sb, history, plan.instances, plan.timeout_s, log)
    if plan.ceiling:
        log("ProducerPerformance on the same cluster, for the ceiling")
        r.ceiling_rps = producer_ceiling(sb.settings, sb.settings.prefix + "ceiling")
    return r


def summarize(plan: Plan, r: Readings) -> dict[str, Any]:
    """The figures: throughput, latency, records, CPU and memory, and the optional readings."""
    timed = r.timed
    done, t0, last = timed.done, timed.t0, timed.last
    outcome = [r.final[o][1] for o in done]
    reasons = Counter(r.reasons.get(o) for o in done if r.final[o][1] == "REJECTED")
    records_per_s = sum(r.records.values()) / max(1e-9, last - t0)
    per_order = max(1, len(done))
    return {
        "orders": plan.orders,
        "hot": plan.hot,
        "offered_rate": plan.rate,
        "instances": plan.instances,
        "ready_s": round(r.ready_s, 1),
        "complete": timed.complete,
        "completed": len(done),
        "backlog": len(timed.sent) - len(done),
        "orders_per_s": round(len(done) / (last - t0), 1) if last > t0 else 0.0,
        "publish_s": round(timed.publish_s, 2),
        "total_s": round(last - t0, 2),
        **_latencies(r.final, r.decided, timed.sent, done),
        "confirmed": outcome.count("SHIPPED"),
        "rejected": outcome.count("REJECTED"),
        "rejected_by_reason": {str(k): v for k, v in sorted(reasons.items(), key=str)},
        "records_per_order": round(sum(r.records.values()) / per_order, 2),
        "records_by_type": {k: round(v / per_order, 3) for k, v in r.records.items()},
        "records_per_s": round(records_per_s, 1),
        "ceiling_records_per_s": r.ceiling_rps,
        "share_of_ceiling": round(records_per_s / r.ceiling_rps, 3) if r.ceiling_rps else None,
        "open": timed.opened,
        "broker_cpu_s_per_1000": round(timed.broker_cpu * 1000 / per_order, 2),
        "rss_mb": {k: round(v, 1) for k, v in sorted(r.rss_peak.items())},
        "cpu_s": {k: round(v, 1) for k, v in sorted(r.rss_cpu.items())},
        # the timed run only (set-up and warm-up excluded): what each process spends per
        # order, and how many of the machine's cores they kept busy together
        "cpu_ms_per_order": {
            k: round(v * 1000 / per_order, 3) for k, v in sorted(timed.cpu_used.items())
        },
        "cores_busy": round(sum(timed.cpu_used.values()) / max(1e-9, timed.ended - t0), 2),
        "worker_restarts": r.restarts,
        "verify": r.verify,
        "tracker": r.tracker,
        "tracker_cold": r.tracker_cold,
        "hops": r.hops,
    }


def _warm_up(
    sb: Sandbox, watcher: StatusWatcher, customers: list[str], skus: list[str]
) -> list[str]:
    """Until every group has its partitions and 300 orders went through: enough to touch every
    partition of every topic, so the timed run meets no first-use costs (metadata, cold code
    paths). The warm-up orders' ids."""
    until(lambda: groups_ready(sb.settings, PIPELINE), 120, 0.1, "every group's assignment")
    warm = [f"warm-{i}" for i in range(300)]
    for i, oid in enumerate(warm):
        sb.publisher.publish(order_body(oid, customers[i % 200], [(skus[i % len(skus)], 1, 100)]))
    sb.publisher.flush(30)
    until(lambda: all(o in watcher.final for o in warm), 90, 0.1, "the warm-up orders")
    until(lambda: groups_ready(sb.settings, PIPELINE), 120, 0.1, "every group's assignment")
    return warm


# (order id, value, headers) of an order, encoded
Encoded = tuple[str, bytes, list[tuple[str, bytes]]]


def _encoded(
    sb: Sandbox, orders: int, hot: bool, skus: list[str], customers: list[str]
) -> list[Encoded]:
    """The timed orders, encoded (and validated) up front: the load generator should not eat the
    machine while it publishes. (order id, value, headers) each."""
    batch: list[Encoded] = []
    for i in range(orders):
        line = (skus[0] if hot else skus[(i * 7) % len(skus)], 1, 100 + i % 50)
        value, headers, event = sb.publisher.encode(
            order_body(f"b-{i}", customers[i % 200], [line])
        )
        batch.append((event.order_id, value, headers))
    return batch


def _publish(
    sb: Sandbox,
    batch: list[Encoded],
    rate: float | None,
    final_so_far: Callable[[], int],
    log: Callable[[str], None],
) -> tuple[dict[str, float], dict[str, float]]:
    """Publishes at `rate` (or as fast as it can): when each order went out, by the monotonic
    clock and by the wall clock (for the steps: see hop_latencies)."""
    sent: dict[str, float] = {}
    sent_wall: dict[str, float] = {}
    t0 = time.monotonic()
    for i, (oid, value, headers) in enumerate(batch):
        if rate:
            ahead = t0 + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        sent[oid], sent_wall[oid] = time.monotonic(), time.time()
        sb.publisher.publish_raw(oid.encode(), value, headers=headers)
        if i % 1000 == 999:
            log(f"  published {i + 1}/{len(batch)}; final so far {final_so_far()}")
    sb.publisher.flush(60)
    return sent, sent_wall


def _latencies(
    final: dict[str, tuple[float, str]],
    decided: dict[str, float],
    sent: dict[str, float],
    done: list[str],
) -> dict[str, float | list[int]]:
    """Publish to final status and to decision, in ms: percentiles, and the p99 of each tenth of
    the run (flat when the pipeline keeps up)."""
    to_final = [(final[o][0] - sent[o]) * 1000 for o in done] or [0.0]
    tenth = max(1, len(to_final) // 10)
    to_decided = [(decided[o] - sent[o]) * 1000 for o in sent if o in decided]
    return {
        "p50_ms": ms(to_final, 0.50),
        "p99_ms": ms(to_final, 0.99),
        "max_ms": round(max(to_final), 1),
        "mean_ms": round(statistics.fmean(to_final), 1),
        "p99_ms_by_tenth": [
            round(percentile(to_final[i : i + tenth], 0.99) or 0.0)
            for i in range(0, len(to_final), tenth)
        ],
        "decided_p50_ms": ms(to_decided, 0.50),
        "decided_p99_ms": ms(to_decided, 0.99),
    }


def _verified(sb: Sandbox) -> dict[str, float]:
    """verify over the run's orders, timed."""
    t1 = time.monotonic()
    found = run_verify(sb.settings, wait_s=60)
    return {
        "seconds": round(time.monotonic() - t1, 2),
        "orders": found["orders"],
        "violations": len(found["violations"]),
    }


def _open(
    sb: Sandbox, rss: RssSampler, timeout_s: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """Once intake and the coordinator have read every order (payment held, so none can be
    decided), each worker's RSS with them all open."""
    admin = AdminClient({"log_level": 3, **sb.settings.kafka()})
    names = sb.settings.names
    client = sb.settings.kafka()
    caught_up = [
        (group_reader(client, names.group("intake")), sb.placed),
        (group_reader(client, names.group("coordinator")), sb.tx_log_topic),
    ]
    until(
        lambda: all(
            sum(backlog(admin, r, t, names.partitions).values()) == 0 for r, t in caught_up
        ),
        timeout_s,
        0.1,
        "intake and the coordinator reading every order",
    )
    time.sleep(2 * RssSampler.EVERY_S)  # a sample taken after the last order was folded
    log(f"every order open; RSS MB {rss.now}")
    return {"rss_mb": {k: round(v, 1) for k, v in sorted(rss.now.items())}}


def _tracker_cold(
    sb: Sandbox, orders: int, instances: int, timeout_s: float, log: Callable[[str], None]
) -> dict[str, float | None]:
    """The tracker's speed alone: stop the pipeline, start trackers on everything the run wrote
    and time them until nothing older than a second is left unconsumed (start-up included)."""
    sb.sup.stop()
    sup = Supervisor(
        sb.settings, {"tracker": instances}, env=sb.env, log_dir=sb.sup.log_dir, log=lambda *_: None
    )
    lag = TrackerLag(sb.settings)
    log(f"pipeline stopped; {instances} tracker instance(s) start on the run's events")
    t0 = time.monotonic()
    sup.start()
    lag.start()
    try:
        until(lambda: lag.caught_up_after(t0) is not None, timeout_s, 0.1, "the cold tracker")
    finally:
        lag.stop()
        sup.stop()
    return {"orders": orders, "instances": instances, "seconds": lag.caught_up_after(t0)}


def render(r: dict[str, Any]) -> str:
    rss = ", ".join(f"{k} {v:.0f}" for k, v in r["rss_mb"].items())
    types = ", ".join(f"{k} {v}" for k, v in r["records_by_type"].items())
    return (
        f"{r['orders']} orders{' (flash sale: one SKU)' if r['hot'] else ''}, offered "
        f"{r['offered_rate'] or 'max'}/s, {r['instances']} instance(s) per worker; ready "
        f"after {r['ready_s']} s\n"
        + (
            ""
            if r["complete"]
            else f"  INCOMPLETE  {r['completed']} of {r['orders']} final by the time limit; "
            f"{r['backlog']} left\n"
        )
        + f"  throughput  {r['orders_per_s']} orders/s (publish to last final status "
        f"{r['total_s']} s)\n"
        f"  latency     p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms "
        f"(to SHIPPED/REJECTED); decided p99 {r['decided_p99_ms']} ms\n"
        f"  outcome     {r['confirmed']} confirmed+shipped, {r['rejected']} rejected "
        f"{r['rejected_by_reason']}\n"
        f"  records     {r['records_per_order']} per order, {r['records_per_s']}/s: {types}\n"
        f"  brokers     {r['broker_cpu_s_per_1000']} CPU s per 1,000 orders\n"
        f"  peak RSS MB {rss}\n"
        f"  CPU ms per order (timed run; {r['cores_busy']} cores busy) "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_ms_per_order"].items())
        + (
            f"\n  verify      {r['verify']['orders']} orders in {r['verify']['seconds']} s, "
            f"{r['verify']['violations']} violations"
            if r.get("verify")
            else ""
        )
        + (
            f"\n  tracker     lag max {r['tracker']['max_lag']} messages / "
            f"{r['tracker']['max_lag_s']} s during the run; caught up "
            f"{r['tracker']['caught_up_s']} s after the last order"
            if r.get("tracker")
            else ""
        )
        + (
            f"\n  tracker     alone, from a cold start: the events of "
            f"{r['tracker_cold']['orders']} orders folded by {r['tracker_cold']['instances']} "
            f"instance(s) in {r['tracker_cold']['seconds']} s"
            if r.get("tracker_cold")
            else ""
        )
        + (
            f"\n  ceiling     ProducerPerformance {r['ceiling_records_per_s']:.0f} records/s on "
            f"this cluster; the pipeline wrote {r['share_of_ceiling']:.1%} of that"
            if r.get("ceiling_records_per_s")
            else ""
        )
        + (
            f"\n  open        RSS MB with {r['open']['orders']} orders open: "
            + ", ".join(f"{k} {v:.0f}" for k, v in r["open"]["rss_mb"].items())
            if r.get("open")
            else ""
        )
        + (
            "".join(
                f"\n  {name:<14}p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms"
                for name, h in r["hops"].items()
            )
            if r.get("hops")
            else ""
        )
    )


def to_json(r: dict[str, Any]) -> str:
    return json.dumps(r, indent=2)


def cpu_now(settings: Settings, rss: RssSampler) -> dict[str, float]:
    """CPU seconds used so far by each process of the run: every worker, the brokers, PostgreSQL
    and this load generator."""
    return {
        **rss.sample(),
        "brokers": broker_cpu_s(settings),
        "postgres": postgres_cpu_s(settings),
        "load generator": own_cpu_s(),
    }
