"""`orderbus failover`: how long a SIGKILLed worker's partitions stay idle.

Under a steady load, one instance of a two-instance worker is SIGKILLed. For every partition the
idle time is from its last output before the kill to its first output after it; the failover time
of a kill is the longest of those (the partitions the victim owned). Outputs are read from the
topic the worker writes, whose partition p carries the orders of input partition p."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import ConsumerGroupState, KafkaException, Message
from confluent_kafka.admin import AdminClient

from orderbus.lab.sandbox import ONE_EACH, Sandbox
from orderbus.lab.watch import TopicWatcher, value_of
from orderbus.ops.generate import order_body
from orderbus.ops.verify import verify
from orderbus.ops.wait import until
from topics.catalogue import ORDERS_STATUS, TX_LOG
from topics.producer import DeliveryCallback
from topics.read import coordinates, headers_of
from workers.runtime.settings import Settings

# worker -> (topic whose records mark its progress, the header type, a test on the JSON body)
PROGRESS = {
    "intake": (TX_LOG, b"TxBegun", lambda body: True),
    "inventory": (TX_LOG, b"Voted", lambda body: b'"participant":"inventory"' in body),
    "payment": (TX_LOG, b"Voted", lambda body: b'"participant":"payment"' in body),
    "coordinator": (
        ORDERS_STATUS,
        b"StatusChanged",
        lambda body: b'"CONFIRMED"' in body or b'"REJECTED"' in body,
    ),
}


class Progress(TopicWatcher):
    """Times (monotonic) of each progress record, per partition."""

    def __init__(
        self, settings: Settings, topic: str, kind: bytes, test: Callable[[bytes], bool]
    ) -> None:
        super().__init__(settings, topic)
        self.kind, self.test = kind, test
        self.times: dict[int, list[float]] = {p: [] for p in range(settings.partitions)}

    def seen(self, msg: Message, now: float) -> None:
        kind = dict(headers_of(msg) or []).get("type")
        if kind == self.kind and self.test(value_of(msg)):
            self.times[coordinates(msg)[1]].append(now)

    def flowing(self, within_s: float = 2.0) -> bool:
        """Every partition made progress lately: a kill now measures a real interruption."""
        now = time.monotonic()
        return all(times and now - times[-1] < within_s for times in self.times.values())

    def idle_after(self, t: float) -> float | None:
        """The longest per-partition gap spanning t; None if some partition never resumed."""
        worst = 0.0
        for times in self.times.values():
            before = [x for x in times if x <= t]
            after = [x for x in times if x > t]
            if not before:
                continue
            if not after:
                return None
            worst = max(worst, after[0] - before[-1])
        return worst

    def idle_once_resumed(self, t: float, timeout_s: float) -> float | None:
        """`idle_after(t)` once every partition shows a record after t (or timeout_s passed):
        from then on later records cannot change it."""
        until(lambda: self.idle_after(t) is not None, timeout_s, poll_s=0.5)
        return self.idle_after(t)


def measure(
    settings: Settings,
    worker: str = "coordinator",
    protocol: str = "classic",
    static: bool = False,
    restart: bool = True,
    kills: int = 3,
    rate: float = 100.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    args = ("--protocol", protocol, "--membership", "static" if static else "dynamic")
    counts = {**ONE_EACH, worker: 2}
    with Sandbox(settings, counts=counts, worker_args=args) as sb:
        seed(sb)
        topic, kind, test = PROGRESS[worker]
        admin, group = AdminClient(sb.settings.kafka()), sb.settings.names.group(worker)
        watch = Progress(sb.settings, sb.settings.names.topic(topic), kind, test)
        watch.start()
        sb.start()
        stop = threading.Event()
        publishing = threading.Thread(target=load, args=(sb, rate, stop), daemon=True)
        publishing.start()
        results: list[float | None] = []
        slots = {f"{group}-{sb.settings.instance_id(slot)}": slot for slot in (0, 1)}
        for k in range(kills):
            # every partition busy, both instances in the group and as many owning partitions as
            # there are partitions for (after a kill: the victim back and the group settled
            # again): a kill of an owner interrupts real work
            owners: list[str] = []

            def ready() -> bool:
                owners[:] = _owners(admin, group, set(slots), sb.settings.partitions)
                return watch.flowing() and bool(owners)

            if not until(ready, 90, poll_s=0.5):
                raise TimeoutError("the sandbox pipeline did not reach a steady flow in 90 s")
            victim = sb.sup.find(worker, slots[owners[k % len(owners)]])
            victim.held = not restart
            assert victim.proc is not None  # the sandbox started every instance
            t = time.monotonic()
            victim.proc.kill()
            idle = watch.idle_once_resumed(t, 60)
            results.append(idle)
            log(
                f"  kill {k + 1}: {worker}-{victim.instance} -> partitions idle "
                f"{'> 60' if idle is None else f'{idle:.1f}'} s"
            )
            if not restart:
                sb.sup.release(victim)
        stop.set()
        publishing.join()

        violations = verify(sb.settings, wait_s=90)["violations"]
        watch.running = False
    done = [r for r in results if r is not None]
    return {
        "worker": worker,
        "protocol": protocol,
        "static": static,
        "restart": restart,
        "idle_s": [None if r is None else round(r, 2) for r in results],
        "p50_s": round(statistics.median(done), 2) if done else None,
        "max_s": round(max(done), 2) if len(done) == len(results) else None,
        "violations": len(violations),
    }


def _owners(admin: AdminClient, group: str, client_ids: set[str], partitions: int) -> list[str]:
    """Those of these clients that own partitions, once the group is stable with all of them in
    it and as many of them owning some as the partitions allow (one partition: one owner, the
    other a standby); [] until then, and while it cannot be told (the group's coordinator moves
    during a rebalance)."""
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    except KafkaException:
        return []
    members = {m.client_id for m in desc.members}
    owners = sorted(
        m.client_id for m in desc.members if m.assignment and m.assignment.topic_partitions
    )
    settled = desc.state == ConsumerGroupState.STABLE and client_ids <= members
    return (
        owners
        if settled and len(set(owners) & client_ids) >= min(len(client_ids), partitions)
        else []
    )


def seed(sb: Sandbox) -> None:
    """Stock and balances that never run out, for the orders `load` publishes."""
    sb.seed(
        stock={f"f-{i}": 10**9 for i in range(20)}, accounts={f"fc{i}": 10**12 for i in range(50)}
    )


def load(
    sb: Sandbox, rate: float, stop: threading.Event, on_delivery: DeliveryCallback | None = None
) -> None:
    """Publish orders at `rate` until `stop` is set (then flush)."""
    i, t0 = 0, time.monotonic()
    while not stop.is_set():
        ahead = t0 + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)  # the load's pace itself: there is no condition to wait for
        sb.publisher.publish(
            order_body(f"f-{i}", f"fc{i % 50}", [(f"f-{i % 20}", 1, 100)]), on_delivery=on_delivery
        )
        sb.publisher.poll(0)
        i += 1
    sb.publisher.flush(30)


CONFIGS = [("classic", False), ("classic", True), ("consumer", False)]


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'protocol':<30} {'restart':<8} {'idle s per kill':<20} {'p50':>6} {'max':>6}  verify",
        "-" * 82,
    ]
    for r in rows:
        name = r["protocol"] + (
            " + static membership"
            if r["static"]
            else (" (dynamic membership)" if r["protocol"] == "classic" else "")
        )
        kills = ", ".join("-" if x is None else f"{x:.1f}" for x in r["idle_s"])
        lines.append(
            f"{name:<30} {'yes' if r['restart'] else 'no':<8} {kills:<20} "
            f"{r['p50_s'] if r['p50_s'] is not None else '-':>6} "
            f"{r['max_s'] if r['max_s'] is not None else '-':>6}  "
            f"{'clean' if not r['violations'] else str(r['violations']) + ' violations'}"
        )
    return "\n".join(lines)
