"""`orderbus chaos`: the pipeline in a sandbox under steady load while faults are injected at
seeded random times, one at a time; then the load stops and `verify` checks every invariant.

The plan is in plan.py, the measurements in measure.py (both pure, unit-tested on synthetic
timelines), the injector in inject.py; this module seeds the sandbox, runs the load and puts the
figures together.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

from orderbus.lab.chaos.inject import Injector
from orderbus.lab.chaos.measure import (
    GRACE_S,
    Acks,
    DecisionWatcher,
    fault_recovery,
    max_gap,
    per_second,
)
from orderbus.lab.chaos.plan import TAIL_S, plan
from orderbus.lab.sandbox import Sandbox
from orderbus.ops.generate import Generated, generate, order_body
from orderbus.ops.report import read_from
from orderbus.ops.verify import verify
from orderbus.ops.wait import until
from topics.producer import OrderPublisher, key_of
from workers.main import PIPELINE
from workers.runtime.settings import Settings
from workers.status import store as status_store

# -- the load
# ---------------------------------------------------------------------------------------

SKUS = [f"sku-{i}" for i in range(8)]
CUSTOMERS = [f"cust-{i:02d}" for i in range(20)]
PRICE_CENTS = 250
INVALID_SHARE = 0.01


def seed_amounts(expected_orders: int) -> tuple[dict[str, int], dict[str, int]]:
    """Plenty of most things; one SKU and four customers run out part-way, so there are real
    refusals (out of stock, insufficient funds) all through the faults. An order takes ~2 lines
    of ~2 units, so a SKU sees ~N/2 units and a customer ~N/20 orders of ~1000 cents."""
    stock = {s: expected_orders * 2 for s in SKUS}
    stock[SKUS[-1]] = max(20, expected_orders // 6)
    accounts = {c: 10**11 for c in CUSTOMERS}
    for c in CUSTOMERS[-4:]:
        accounts[c] = max(5_000, expected_orders * 25)
    return stock, accounts


def run(
    settings: Settings,
    duration_s: float,
    kinds: Sequence[str],
    rate: float = 100.0,
    seed: int = 1,
    instances: int = 2,
    log: Callable[[str], None] = print,
    keep: bool = False,
) -> dict[str, Any]:
    planned = plan(kinds, duration_s, seed)
    counts = {w: instances for w in PIPELINE}
    sb = Sandbox(settings, counts=counts)
    log(
        f"chaos seed {seed}: sandbox {sb.tag}, {sum(counts.values())} worker processes, logs in "
        f"{sb.sup.log_dir}"
    )
    injector, watcher, violations, failed = None, None, [], True
    try:
        sb.seed(*seed_amounts(int(rate * duration_s)))
        # the sandbox's publisher, without the connection-refused lines of the brokers we kill
        sb.publisher = OrderPublisher(
            sb.settings.as_principal("producer").kafka(log_level=2), topic=sb.placed
        )
        t_ready = time.monotonic()
        watcher = DecisionWatcher(sb.settings, sb.status_topic, t_ready)
        watcher.start()
        sb.start()
        warm = _warm(sb, watcher)
        log(
            f"pipeline warm after {time.monotonic() - t_ready:.1f}s; load at {rate:g} orders/s, "
            f"{len(planned)} faults planned"
        )
        t0 = time.monotonic()
        injector = Injector(sb, planned, t0, log)
        injector.start()
        acks = Acks(t0)
        load = Load(sb, injector, watcher, acks, len(warm), t0, log)
        load.drive(
            generate(10**9, seed, SKUS, CUSTOMERS, PRICE_CENTS, invalid_share=INVALID_SHARE),
            rate,
            duration_s,
        )
        left = sb.publisher.flush(60)
        log(f"load stopped at {load.end_s:.1f}s ({left} undelivered); waiting for quiet")
        if injector.error:
            raise injector.error
        quiet = Quiet(watcher, load.valid_ids, t0, log)
        until(quiet.reached, 200, what="the published orders' decisions")
        if quiet.halted:
            log(
                f"  no decision for 60 s with {quiet.undecided()} orders undecided: the pipeline "
                "has halted"
            )
        verdict = verify(sb.settings, wait_s=10 if quiet.halted else 120, log=log)
        violations = verdict["violations"]
        observed = time.monotonic() - t0
        watcher.running = False
        merged = _measure(injector, watcher, acks, t0 - t_ready, observed)
        gap, gap_at = max_gap(merged, 0.0, load.end_s, observed)
        failed = False
        return {
            "seed": seed,
            "duration_s": duration_s,
            "load_s": round(load.end_s, 1),
            "rate": rate,
            "instances": instances,
            "kinds": sorted(set(kinds)),
            "sandbox": sb.tag,
            "log_dir": str(sb.sup.log_dir),
            "orders": {
                "published": sb.publisher.delivered,
                "confirmed": verdict["committed"],
                "rejected": verdict["aborted"],
                # a deadline among them, with every participant up, is what a clock fault must not
                # cause
                "rejected_by_reason": read_from(
                    sb.settings, status_store.DATABASE, status_store.rejected_by_reason
                ),
                "dead_lettered": verdict["dead_letters"],
                "undelivered": sb.publisher.failed + left,
            },
            "faults": [asdict(f) for f in injector.faults],
            "max_gap_s": gap,
            "max_gap_at_s": gap_at,
            "halted": quiet.halted,
            "worker_restarts": sum(c.restarts for c in sb.sup.children),
            "per_second": per_second(merged, 0.0, math.ceil(observed)),
            "verify": {
                k: verdict[k] for k in ("orders", "committed", "aborted", "dead_letters", "seconds")
            },
            "violations": violations,
        }
    finally:
        if injector is not None:
            injector.halt.set()  # a fault in hand is undone before we go on
            injector.join()
        if watcher is not None:
            watcher.running = False
        if keep and (violations or failed):
            sb.sup.stop()
            log(f"kept sandbox {sb.tag} (topics {sb.tag}.*, databases {sb.tag}_*) for inspection")
        else:
            sb.close()


def _warm(sb: Sandbox, watcher: DecisionWatcher) -> list[str]:
    """Every partition decides once before the clock starts: the run measures faults, not group
    joins and cold code paths. The warm-up orders' ids."""
    warm = [f"warm-{i}" for i in range(60)]
    for i, oid in enumerate(warm):
        sb.publisher.publish(order_body(oid, CUSTOMERS[i % 16], [(SKUS[i % 7], 1, PRICE_CENTS)]))
    sb.publisher.flush(30)
    until(
        lambda: all(o in watcher.decided for o in warm), 120, what="the warm-up orders' decisions"
    )
    return warm


class Load:
    """The steady load: orders at `rate` until the duration is over, every fault is undone and
    the tail has run, with a line of progress every 5 s."""

    def __init__(
        self,
        sb: Sandbox,
        injector: Injector,
        watcher: DecisionWatcher,
        acks: Acks,
        warm: int,
        t0: float,
        log: Callable[[str], None],
    ) -> None:
        self.sb, self.injector, self.watcher, self.acks = sb, injector, watcher, acks
        self.warm, self.t0, self.log = warm, t0, log
        self.valid_ids: set[str] = set()  # the valid orders published: each must be decided
        self.end_s = 0.0

    def drive(self, orders: Iterator[Generated], rate: float, duration_s: float) -> None:
        i, next_log = 0, 5.0
        while True:
            now = time.monotonic() - self.t0
            if now >= duration_s and self.injector.done and now >= self.injector.lifted_at + TAIL_S:
                break  # (the load runs on past --duration if faults took longer to undo)
            value, ok, _ = next(orders)
            key = key_of(value)
            if ok and key is not None:
                self.valid_ids.add(key.decode())
            self.sb.publisher.publish_raw(key, value, on_delivery=self.acks.delivered)
            i += 1
            if now >= next_log:
                next_log += 5.0
                self._progress(now)
            ahead = self.t0 + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        self.end_s = time.monotonic() - self.t0

    def _progress(self, now: float) -> None:
        last = self.injector.faults[-1] if self.injector.faults else None
        self.log(
            f"  {now:6.1f}s  published {self.sb.publisher.delivered}  decided "
            f"{len(self.watcher.decided) - self.warm}  last fault "
            + (f"{last.kind} {last.target} at {last.at_s:.1f}s" if last else "none yet")
        )


class Quiet:
    """After the load: until every order is decided; or 180 s; or 60 s without a single new
    decision (a halted pipeline: waiting longer only delays the report of what verify will find)."""

    def __init__(
        self, watcher: DecisionWatcher, valid_ids: set[str], t0: float, log: Callable[[str], None]
    ) -> None:
        self.watcher, self.valid_ids, self.t0, self.log = watcher, valid_ids, t0, log
        self.give_up = time.monotonic() + 180
        self.seen, self.seen_at = len(watcher.decided), time.monotonic()
        self.next_log = time.monotonic() - t0

    def undecided(self) -> int:  # membership tests only: the watcher adds to `decided` meanwhile
        return sum(1 for o in self.valid_ids if o not in self.watcher.decided)

    @property
    def halted(self) -> bool:
        return self.undecided() > 0 and time.monotonic() - self.seen_at > 60

    def reached(self) -> bool:
        now = time.monotonic()
        if len(self.watcher.decided) > self.seen:
            self.seen, self.seen_at = len(self.watcher.decided), now
        if now - self.t0 >= self.next_log:
            self.next_log += 10.0
            self.log(
                f"  {now - self.t0:6.1f}s  undecided {self.undecided()} of {len(self.valid_ids)} "
                "published"
            )
        return not self.undecided() or now > self.give_up or now - self.seen_at > 60


def _measure(
    injector: Injector, watcher: DecisionWatcher, acks: Acks, shift: float, observed: float
) -> list[float]:
    """Each fault's recovery and the longest wait for an acknowledgement that overlapped it, from
    the decisions' timeline (on the load's clock); every decision's time, in order."""
    timeline = {p: [t - shift for t in ts] for p, ts in watcher.times.items()}
    for f in injector.faults:
        until_s = (f.lifted_s if f.lifted_s is not None else f.at_s) + GRACE_S
        f.recovery_s, f.stalled_partitions, f.stalled_before = fault_recovery(
            timeline, f.at_s, until_s, observed
        )
        f.publish_stall_s = acks.longest_wait(f.at_s, until_s)
    return sorted(t for ts in timeline.values() for t in ts)
