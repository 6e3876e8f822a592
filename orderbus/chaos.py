"""`orderbus chaos`: the pipeline in a sandbox under steady load while faults are injected at
seeded random times, one at a time; then the load stops and `verify` checks every invariant.

The plan (`plan`) and the measurements (`partition_stall`, `fault_recovery`, `max_gap`,
`per_second`) are pure functions of their arguments, unit-tested on synthetic timelines; the rest
is the shell that starts processes, sends signals and reads the decision stream.

Progress is what a read_committed reader of `orders.status` sees: the moment each CONFIRMED or
REJECTED becomes visible, per partition (every topic has the same partitions, keyed by order id, so
a status partition stands for that slice of the whole pipeline).

Recovery, defined: a partition *stalled* because of a fault when, between the fault and shortly
after it was lifted (`until`), a span longer than `STALL_S` began in which that partition showed no
decision. The fault's `recovery_s` is the time from the fault until the last of its stalled
partitions decided again; 0.0 when no partition stalled (a killed shipping instance, say); None
when a stalled partition never decided again while we watched. A partition that had already
stalled before the fault (no decision in the `STALL_S` before it) is listed apart and left out.
"""
from __future__ import annotations

import bisect
import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field


from infra import procs
from infra.kafka import cluster
from infra.postgres import server
from infra.procs import InfraError
from orderbus.generate import generate, order_body
from orderbus.sandbox import Sandbox
from orderbus.verify import verify
from orderbus.watch import TopicWatcher
from topics.catalogue import ORDERS_STATUS, TX_LOG
from topics.producer import OrderPublisher
from workers.main import PIPELINE

KINDS = ("worker-kill", "worker-pause", "worker-churn", "broker-kill", "broker-pause",
         "pg-restart")
# how long a fault is held (s): a pause well past the 3 s consumer session timeout, so the group
# moves the partitions and the zombie's transaction must be fenced; a broker down a few seconds
HOLD_S = {"worker-kill": (0.0, 0.0), "worker-pause": (9.0, 11.0), "worker-churn": (5.0, 10.0),
          "broker-kill": (3.0, 6.0), "broker-pause": (3.0, 5.0), "pg-restart": (1.0, 3.0)}
# what the plan allows beyond the hold before the next fault: a restart, a JVM start and catch-up
SETTLE_S = {"worker-kill": 1.0, "worker-pause": 1.0, "worker-churn": 1.0, "broker-kill": 10.0,
            "broker-pause": 1.0, "pg-restart": 3.0}
BROKER_AIMS = ("controller", "leader", "any")   # which broker a broker-kill goes for
STALL_S = 1.0      # a partition with no decision for longer than this is stalled
GRACE_S = 2.0      # a stall that begins this soon after the fault was lifted is still its doing
WARMUP_S = 8.0     # no fault before the load has run this long
TAIL_S = 10.0      # nor in the last seconds: the load runs on so recovery can be seen
MIN_GAP_S = 4.0    # between one fault being lifted and the next
JITTER_S = 3.0


# -- pure: the plan -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Planned:
    kind: str
    at_s: float        # seconds after the load started
    hold_s: float      # how long the fault lasts (pause length, time a broker or PostgreSQL is down)
    pick: float        # in [0, 1): which of the candidates found at the time is the target
    aim: str = ""      # broker-kill: one of BROKER_AIMS


def plan(kinds, duration_s: float, seed: int, warmup_s: float = WARMUP_S, tail_s: float = TAIL_S,
         min_gap_s: float = MIN_GAP_S, jitter_s: float = JITTER_S) -> list[Planned]:
    """Faults at seeded random times, one at a time: each starts at least `min_gap_s` after the
    previous one is expected to be over. Every kind in `kinds` comes once (in a seeded order)
    before any repeats, so every kind appears whenever the duration allows."""
    kinds = sorted(set(kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}; one of {', '.join(KINDS)}")
    rng = random.Random(seed)   # private: the plan must not depend on who else draws
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


def duration_for_all(kinds, warmup_s: float = WARMUP_S, tail_s: float = TAIL_S,
                     min_gap_s: float = MIN_GAP_S, jitter_s: float = JITTER_S) -> float:
    """A duration long enough for one of each kind whatever the seed."""
    kinds = set(kinds)
    return math.ceil(warmup_s + tail_s + len(kinds) * (min_gap_s + jitter_s)
                     + sum(HOLD_S[k][1] + SETTLE_S[k] for k in kinds))


# -- pure: measurements over the decision timeline ------------------------------------------------

def partition_stall(times: list[float], at: float, until: float, end: float,
                    stall_s: float = STALL_S) -> float | None:
    """For one partition's sorted decision times: the seconds from `at` until it decided again
    after a stall that began in [at, until); None when it did not stall there; inf when it had
    not decided again by `end`, the last moment observed."""
    start = at
    for t in times[bisect.bisect_right(times, at):]:
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


def fault_recovery(decisions: dict[int, list[float]], at: float, until: float, end: float,
                   stall_s: float = STALL_S) -> tuple[float | None, list[int], list[int]]:
    """(recovery seconds, the partitions that stalled, those already stalled before it) for a
    fault at `at`, lifted at `until - GRACE_S`; see the module docstring. `decisions` must hold
    every partition, even one without a decision. A partition already stalled when the fault
    came is left out of its recovery (an earlier fault or a halted worker holds it; the
    longest gap and verify report that)."""
    before = sorted(p for p, ts in decisions.items() if already_stalled(ts, at, stall_s))
    stalls = {p: partition_stall(ts, at, until, end, stall_s) for p, ts in decisions.items()
              if p not in before}
    hit = sorted(p for p, s in stalls.items() if s is not None)
    if not hit:
        return 0.0, [], before
    worst = max(stalls[p] for p in hit)
    return (None if math.isinf(worst) else round(worst, 2)), hit, before


def max_gap(times: list[float], start: float, end: float, observed: float) -> tuple[float, float]:
    """(seconds, where it began) of the longest span with no decision at all that began while the
    load ran, in [start, end); a span still open closes at `observed`."""
    times = sorted(times)
    prev, best = start, (0.0, start)
    for t in times[bisect.bisect_right(times, start):]:
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


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else None


# -- the shell --------------------------------------------------------------------------------------

@dataclass
class Fault:
    kind: str
    target: str
    at_s: float
    hold_s: float
    role: str = ""                   # broker-kill: controller / leader of tx.log[p] / any
    lifted_s: float | None = None    # when it was undone (SIGCONT, restarted and caught up)
    recovery_s: float | None = None
    stalled_partitions: list = field(default_factory=list)
    stalled_before: list = field(default_factory=list)   # already without decisions at at_s
    # the longest an order published while the fault was on waited for its acknowledgement
    publish_stall_s: float | None = None
    note: str = ""


class Acks:
    """When each published order was sent and acknowledged (seconds since t0), in send order."""

    def __init__(self, t0: float):
        self.t0 = t0
        self.waits: list[tuple[float, float]] = []      # (sent, waited)

    def delivered(self, err, msg) -> None:
        if err is None:
            latency = msg.latency() or 0.0       # librdkafka: produce() to acknowledgement
            now = time.monotonic() - self.t0
            self.waits.append((now - latency, latency))

    def longest_wait(self, start_s: float, end_s: float) -> float | None:
        """The longest acknowledgement wait that overlapped [start_s, end_s]: orders sent during
        it, and those in flight when it began."""
        waits = [w for sent, w in self.waits if sent <= end_s and sent + w >= start_s]
        return round(max(waits), 2) if waits else None


class DecisionWatcher(TopicWatcher):
    """When each CONFIRMED/REJECTED becomes visible to a read_committed reader, per partition."""

    def __init__(self, settings, topic: str, t0: float):
        super().__init__(settings, topic, log_level=2)
        self.t0 = t0
        self.times: dict[int, list[float]] = {p: [] for p in range(ORDERS_STATUS.partitions)}
        self.decided: dict[str, str] = {}

    def seen(self, msg, now: float) -> None:
        event = json.loads(msg.value())   # the workers validated it already
        if event["status"] in ("CONFIRMED", "REJECTED"):
            self.times[msg.partition()].append(now - self.t0)
            self.decided.setdefault(event["order_id"], event["status"])


class Injector(threading.Thread):
    """Injects the planned faults in order, never two at once, and always undoes each one."""

    def __init__(self, sb: Sandbox, planned: list[Planned], t0: float, log):
        super().__init__(daemon=True)
        self.sb, self.planned, self.t0, self.log = sb, planned, t0, log
        self.layout = sb.layout
        self.faults: list[Fault] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.lifted_at = 0.0    # seconds after t0 the last fault was undone

    def now(self) -> float:
        return time.monotonic() - self.t0

    @property
    def done(self) -> bool:
        return not self.is_alive()

    def run(self):
        try:
            for p in self.planned:
                # the plan's own spacing, kept even when an earlier fault took longer to undo
                start = max(p.at_s, self.lifted_at + MIN_GAP_S)
                if self.halt.wait(max(0.0, start - self.now())):
                    return
                fault = getattr(self, "_" + p.kind.replace("-", "_"))(p)
                fault.lifted_s = round(self.now(), 2)
                self.lifted_at = fault.lifted_s
                self.log(f"  {fault.at_s:6.1f}s  {fault.kind} {fault.target}: lifted at "
                         f"{fault.lifted_s:.1f}s{'; ' + fault.note if fault.note else ''}")
        except BaseException as e:   # reported by the caller; the thread must not die silently
            self.error = e

    def _fault(self, p: Planned, target: str, role: str = "") -> Fault:
        f = Fault(p.kind, target, round(self.now(), 2), p.hold_s, role)
        self.faults.append(f)
        return f

    # -- workers
    def _live_child(self, pick: float):
        live = sorted((c for c in self.sb.sup.children if c.proc and c.proc.poll() is None),
                      key=lambda c: (PIPELINE.index(c.name), c.instance))
        if not live:
            raise InfraError("no live worker instance to inject a fault into")
        return live[int(pick * len(live))]

    def _worker_kill(self, p: Planned) -> Fault:
        child = self._live_child(p.pick)
        old = child.proc
        os.kill(old.pid, signal.SIGKILL)
        f = self._fault(p, child.label)
        deadline = time.monotonic() + 30
        while child.proc is old and time.monotonic() < deadline:   # the supervisor restarts it
            time.sleep(0.1)
        if child.proc is old:
            f.note = "not restarted within 30 s"
        return f

    def _worker_pause(self, p: Planned) -> Fault:
        child = self._live_child(p.pick)
        pid = child.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            f = self._fault(p, child.label)
            self.halt.wait(p.hold_s)
        finally:
            _signal_if_alive(pid, signal.SIGCONT)
        return f

    def _worker_churn(self, p: Planned) -> Fault:
        # one more instance joins a busy group, takes live partitions from the others, and leaves
        # cleanly again: revocations of busy partitions, not only of dead members'
        name = PIPELINE[int(p.pick * len(PIPELINE))]
        child = self.sb.sup.add(name)
        try:
            f = self._fault(p, child.label)
            self.halt.wait(p.hold_s)
        finally:
            self.sb.sup.remove(child)
        return f

    # -- brokers
    def _broker_kill(self, p: Planned) -> Fault:
        node, role = self._aim(p)
        pid = procs.running(cluster.pidfile(self.layout, node))
        if pid is None:
            raise InfraError(f"Kafka node {node} is not running; refusing to inject more faults")
        os.kill(pid, signal.SIGKILL)
        try:
            reap_child(pid)
            f = self._fault(p, f"node{node}", role)
            self.halt.wait(p.hold_s)
        finally:
            cluster.start_node(self.layout, node)
        f.note = wait_broker(self.sb.settings, self.layout, node)
        return f

    def _broker_pause(self, p: Planned) -> Fault:
        node = list(self.layout.nodes)[int(p.pick * self.layout.brokers)]
        pid = procs.running(cluster.pidfile(self.layout, node))
        if pid is None:
            raise InfraError(f"Kafka node {node} is not running; refusing to inject more faults")
        os.kill(pid, signal.SIGSTOP)
        try:
            f = self._fault(p, f"node{node}", "controller" if node == controller(self.layout) else "")
            self.halt.wait(p.hold_s)
        finally:
            _signal_if_alive(pid, signal.SIGCONT)
        f.note = wait_broker(self.sb.settings, self.layout, node)
        return f

    def _aim(self, p: Planned) -> tuple[int, str]:
        nodes = list(self.layout.nodes)
        if p.aim == "controller":
            node = controller(self.layout)
            if node is not None:
                return node, "controller"
        if p.aim == "leader":
            part = int(p.pick * TX_LOG.partitions)
            node = _leader(self.sb.settings, self.sb.settings.names.topic(TX_LOG), part)
            if node is not None:
                return node, f"leader of tx.log[{part}]"
        node = nodes[int(p.pick * len(nodes))]
        return node, "controller" if node == controller(self.layout) else ""

    # -- PostgreSQL
    def _pg_restart(self, p: Planned) -> Fault:
        f = self._fault(p, "postgresql")
        try:
            server.stop(self.layout)     # fast shutdown: every session is cut at once
            self.halt.wait(p.hold_s)
        finally:
            restart_postgres(self.layout)
        return f


def restart_postgres(layout, attempts: int = 5) -> None:
    for attempt in range(attempts):
        try:
            server.start(layout)
            server.wait_ready(layout, timeout_s=60)
            return
        except InfraError:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)    # the old postmaster may still hold its port for a moment


def controller(layout) -> int | None:
    """The active KRaft controller, from the quorum state the nodes keep on disk. (The
    DescribeCluster answer names a random broker on KRaft, not the controller.)"""
    best = None
    for node in layout.nodes:
        path = layout.node_dir(node) / "data" / "__cluster_metadata-0" / "quorum-state"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if state.get("leaderId", -1) >= 0 and (best is None or state["leaderEpoch"] > best[0]):
            best = (state["leaderEpoch"], state["leaderId"])
    return best[1] if best else None


def wait_broker(settings, layout, node: int) -> str:
    """Until the node serves metadata again (or fail loudly), then until no partition is
    under-replicated, so the next fault never meets a partition one broker from unavailable.
    Returns a note when that last wait gave up."""
    deadline = time.monotonic() + 120
    while not cluster.serves_metadata(layout, node):
        if time.monotonic() > deadline:
            raise InfraError(f"Kafka node {node} did not serve metadata within 120 s after "
                             "the fault; see its server.log")
        time.sleep(0.3)
    deadline = time.monotonic() + 60
    while (urp := under_replicated(settings)) != 0:
        if time.monotonic() > deadline:
            return f"{urp} partitions still under-replicated 60 s after node {node} returned"
        time.sleep(0.5)
    return ""


def _leader(settings, topic: str, partition: int) -> int | None:
    try:
        md = cluster.admin(settings.kafka()).list_topics(topic, timeout=5)
        return md.topics[topic].partitions[partition].leader
    except Exception:   # a metadata hiccup only means we aim at a random broker instead
        return None


def under_replicated(settings) -> int | None:
    try:
        md = cluster.admin(settings.kafka()).list_topics(timeout=5)
    except Exception:
        return None
    return sum(1 for t in md.topics.values() for p in t.partitions.values()
               if len(p.isrs) < len(p.replicas))


def _signal_if_alive(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def reap_child(pid: int) -> None:
    """A broker we restarted earlier is our child: collect it, or it lingers as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# -- the load ---------------------------------------------------------------------------------------

SKUS = [f"sku-{i}" for i in range(8)]
CUSTOMERS = [f"cust-{i:02d}" for i in range(20)]
PRICE_CENTS = 250
INVALID_SHARE = 0.01


def seed_amounts(expected_orders: int) -> tuple[dict, dict]:
    """Plenty of most things; one SKU and four customers run out part-way, so there are real
    refusals (out of stock, insufficient funds) all through the faults. An order takes ~2 lines
    of ~2 units, so a SKU sees ~N/2 units and a customer ~N/20 orders of ~1000 cents."""
    stock = {s: expected_orders * 2 for s in SKUS}
    stock[SKUS[-1]] = max(20, expected_orders // 6)
    accounts = {c: 10**11 for c in CUSTOMERS}
    for c in CUSTOMERS[-4:]:
        accounts[c] = max(5_000, expected_orders * 25)
    return stock, accounts


def _key_of(value: bytes) -> bytes | None:
    try:
        return str(json.loads(value)["order_id"]).encode()
    except (ValueError, KeyError, TypeError):
        return None


def run(settings, duration_s: float, kinds, rate: float = 100.0, seed: int = 1,
        instances: int = 2, log=print, keep: bool = False) -> dict:
    planned = plan(kinds, duration_s, seed)
    counts = {w: instances for w in PIPELINE}
    sb = Sandbox(settings, counts=counts)
    log(f"chaos seed {seed}: sandbox {sb.tag}, {sum(counts.values())} worker processes, "
        f"logs in {sb.sup.log_dir}")
    injector, watcher, violations, failed = None, None, [], True
    try:
        sb.seed(*seed_amounts(int(rate * duration_s)))
        # the sandbox's publisher, without the connection-refused lines of the brokers we kill
        sb.publisher = OrderPublisher(sb.settings.as_principal("producer").kafka(log_level=2),
                                      topic=sb.placed)
        t_ready = time.monotonic()
        watcher = DecisionWatcher(sb.settings, sb.status_topic, t_ready)
        watcher.start()
        sb.start()
        # every partition decides once before the clock starts: the run measures faults, not
        # group joins and first transactions
        warm = [f"warm-{i}" for i in range(60)]
        for i, oid in enumerate(warm):
            sb.publisher.publish(order_body(oid, CUSTOMERS[i % 16], [(SKUS[i % 7], 1, PRICE_CENTS)]))
        sb.publisher.flush(30)
        _wait(lambda: all(o in watcher.decided for o in warm), 120, "warm-up orders")
        log(f"pipeline warm after {time.monotonic() - t_ready:.1f}s; load at {rate:g} orders/s, "
            f"{len(planned)} faults planned")
        t0 = time.monotonic()
        shift = t0 - t_ready
        injector = Injector(sb, planned, t0, log)
        injector.start()
        valid_ids: set[str] = set()
        acks = Acks(t0)
        orders = generate(10**9, seed, SKUS, CUSTOMERS, PRICE_CENTS, invalid_share=INVALID_SHARE)
        i, next_log = 0, 5.0
        while True:
            now = time.monotonic() - t0
            if now >= duration_s and injector.done and now >= injector.lifted_at + TAIL_S:
                break   # (the load runs on past --duration if faults took longer to undo)
            value, ok, _ = next(orders)
            key = _key_of(value)
            if ok:
                valid_ids.add(key.decode())
            sb.publisher.publish_raw(key, value, on_delivery=acks.delivered)
            i += 1
            if now >= next_log:
                next_log += 5.0
                last = injector.faults[-1] if injector.faults else None
                log(f"  {now:6.1f}s  published {sb.publisher.delivered}  decided "
                    f"{len(watcher.decided) - len(warm)}  last fault "
                    + (f"{last.kind} {last.target} at {last.at_s:.1f}s" if last else "none yet"))
            ahead = t0 + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        load_end = time.monotonic() - t0
        left = sb.publisher.flush(60)
        log(f"load stopped at {load_end:.1f}s ({left} undelivered); waiting for quiet")
        if injector.error:
            raise injector.error
        t_quiet = time.monotonic() + 180
        progress = [len(watcher.decided), time.monotonic()]

        def undecided() -> int:   # membership tests only: the watcher adds to `decided` meanwhile
            return sum(1 for o in valid_ids if o not in watcher.decided)

        def all_decided() -> bool:
            # until every order is decided; or 180 s; or 60 s without a single new decision (a
            # halted pipeline: waiting longer only delays the report of what verify will find)
            nonlocal next_log
            now = time.monotonic() - t0
            if len(watcher.decided) > progress[0]:
                progress[:] = [len(watcher.decided), time.monotonic()]
            if now >= next_log:
                next_log += 10.0
                log(f"  {now:6.1f}s  undecided {undecided()} of {len(valid_ids)} published")
            return (not undecided() or time.monotonic() > t_quiet
                    or time.monotonic() - progress[1] > 60)
        _wait(all_decided, 200, "published orders")
        halted = undecided() > 0 and time.monotonic() - progress[1] > 60
        if halted:
            log(f"  no decision for 60 s with {undecided()} orders undecided: the pipeline has "
                "halted")
        verdict = verify(sb.settings, wait_s=10 if halted else 120, log=log)
        violations = verdict["violations"]
        observed = time.monotonic() - t0
        watcher.running = False
        timeline = {p: [t - shift for t in ts] for p, ts in watcher.times.items()}
        for f in injector.faults:
            until = (f.lifted_s if f.lifted_s is not None else f.at_s) + GRACE_S
            f.recovery_s, f.stalled_partitions, f.stalled_before = fault_recovery(
                timeline, f.at_s, until, observed)
            f.publish_stall_s = acks.longest_wait(f.at_s, until)
        merged = sorted(t for ts in timeline.values() for t in ts)
        gap, gap_at = max_gap(merged, 0.0, load_end, observed)
        failed = False
        return {
            "seed": seed, "duration_s": duration_s, "load_s": round(load_end, 1), "rate": rate,
            "instances": instances, "kinds": sorted(set(kinds)), "sandbox": sb.tag,
            "log_dir": str(sb.sup.log_dir),
            "orders": {"published": sb.publisher.delivered, "confirmed": verdict["committed"],
                       "rejected": verdict["aborted"], "dead_lettered": verdict["dead_letters"],
                       "undelivered": sb.publisher.failed + left},
            "faults": [asdict(f) for f in injector.faults],
            "max_gap_s": gap, "max_gap_at_s": gap_at, "halted": halted,
            "worker_restarts": sum(c.restarts for c in sb.sup.children),
            "per_second": per_second(merged, 0.0, math.ceil(observed)),
            "verify": {k: verdict[k] for k in ("orders", "committed", "aborted", "dead_letters",
                                               "seconds")},
            "violations": violations,
        }
    finally:
        if injector is not None:
            injector.halt.set()      # a fault in hand is undone before we go on
            injector.join()
        if watcher is not None:
            watcher.running = False
        if keep and (violations or failed):
            sb.sup.stop()
            log(f"kept sandbox {sb.tag} (topics {sb.tag}.*, databases {sb.tag}_*) for inspection")
        else:
            sb.close()


def _wait(cond, timeout_s: float, what: str, strict: bool = True) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            if strict:
                raise TimeoutError(f"{what} not decided after {timeout_s:.0f}s")
            return False   # verify will say which, and why
        time.sleep(0.2)
    return True


def summary_by_kind(faults: list[dict]) -> dict[str, dict]:
    """Recovery p50 and max per fault kind (None values counted apart)."""
    out = {}
    for kind in sorted({f["kind"] for f in faults}):
        rs = [f["recovery_s"] for f in faults if f["kind"] == kind]
        known = [r for r in rs if r is not None]
        stalls = [f["publish_stall_s"] for f in faults
                  if f["kind"] == kind and f.get("publish_stall_s") is not None]
        out[kind] = {"faults": len(rs), "p50_s": percentile(known, 0.5),
                     "max_s": max(known) if known else None, "unrecovered": len(rs) - len(known),
                     "publish_stall_max_s": max(stalls) if stalls else None}
    return out
