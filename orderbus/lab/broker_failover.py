"""`orderbus failover --broker`: what a broker SIGKILL costs the shops and the pipeline.

Under a steady load, once every partition is deciding and no partition is under-replicated, one
broker is SIGKILLed — the active controller and a broker that is not, in turn — and restarted
`down_s` later. Per kill: the longest wait for a publish acknowledgement that overlapped
the fault (librdkafka's `msg.latency()`: produce() to acknowledgement), and the longest time any
partition went without a decision. Each kill meets a quiet, caught-up pipeline, so one fault's
backlog never inflates the next one's figures (unlike `orderbus chaos`, which measures faults as
they come). The default `down_s` keeps the broker down until the failover is over, so that its
restart (a JVM starting on the survivors' cores, here) is not part of the figure."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from infra import procs
from infra.kafka import cluster
from infra.kafka.probe import controller, under_replicated, wait_broker
from infra.layout import Layout
from infra.procs import InfraError, reap_child
from orderbus.lab.chaos.measure import Acks
from orderbus.lab.failover import PROGRESS, Progress, load, seed
from orderbus.lab.sandbox import ONE_EACH, Sandbox
from orderbus.ops.verify import verify
from workers.runtime.settings import Settings

SETTLE_S = 90.0  # the longest wait for a steady flow before a kill


def measure(
    settings: Settings,
    kills: int = 4,
    rate: float = 100.0,
    down_s: float = 15.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    with Sandbox(settings, counts=ONE_EACH) as sb:
        seed(sb)
        topic, kind, test = PROGRESS["coordinator"]
        watch = Progress(sb.settings, sb.settings.names.topic(topic), kind, test)
        watch.start()
        sb.start()
        t0 = time.monotonic()
        acks = Acks(t0)
        stop = threading.Event()
        publishing = threading.Thread(
            target=load, args=(sb, rate, stop, acks.delivered), daemon=True
        )
        publishing.start()
        rows: list[dict[str, Any]] = []
        for k in range(kills):
            _settle(sb, watch)
            node, role = _victim(sb.layout, want_controller=k % 2 == 0)
            pid = procs.running(cluster.pidfile(sb.layout, node))
            if pid is None:
                raise InfraError(f"Kafka node {node} is not running; refusing to kill another")
            t = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            try:
                reap_child(pid)
                time.sleep(down_s)
            finally:  # even when interrupted: never leave a broker down
                cluster.start_node(sb.layout, node)
            note = wait_broker(sb.settings.kafka(), sb.layout, node)
            idle = watch.idle_once_resumed(t, 120)
            stall = acks.longest_wait(t - t0, time.monotonic() - t0)
            rows.append(
                {
                    "node": node,
                    "role": role,
                    "publish_stall_s": stall,
                    "decisions_idle_s": None if idle is None else round(idle, 2),
                    "note": note,
                }
            )
            log(
                f"  kill {k + 1}: node{node} ({role}) -> publish waited {stall} s, decisions "
                f"idle {'> 120' if idle is None else f'{idle:.1f}'} s"
            )
        stop.set()
        publishing.join()

        violations = verify(sb.settings, wait_s=90)["violations"]
        watch.running = False
        undelivered = sb.publisher.failed
    stalls: list[float] = [r["publish_stall_s"] for r in rows if r["publish_stall_s"] is not None]
    idles: list[float | None] = [r["decisions_idle_s"] for r in rows]
    known = [i for i in idles if i is not None]
    return {
        "kills": rows,
        "rate": rate,
        "down_s": down_s,
        "publish_stall_p50_s": round(statistics.median(stalls), 2) if stalls else None,
        "publish_stall_max_s": max(stalls) if stalls else None,
        "decisions_idle_p50_s": round(statistics.median(known), 2)
        if len(known) == len(idles)
        else None,
        "decisions_idle_max_s": max(known) if len(known) == len(idles) else None,
        "undelivered": undelivered,
        "violations": len(violations),
    }


def _settle(sb: Sandbox, watch: Progress) -> None:
    """Every broker up, no partition under-replicated, every partition deciding."""
    deadline = time.monotonic() + SETTLE_S
    while not (watch.flowing() and under_replicated(sb.settings.kafka()) == 0):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the sandbox pipeline did not reach a steady flow in {SETTLE_S:.0f} s"
            )
        time.sleep(0.5)


def _victim(layout: Layout, want_controller: bool) -> tuple[int, str]:
    active = controller(layout)
    if want_controller and active is not None:
        return active, "controller"
    others = [n for n in layout.nodes if n != active]
    return others[0], "broker"


def render(r: dict[str, Any]) -> str:
    lines = [
        f"{'kill':<5} {'node':<7} {'role':<11} {'publish wait s':>15} {'decisions idle s':>17}",
        "-" * 58,
    ]
    for k, row in enumerate(r["kills"], 1):
        idle = row["decisions_idle_s"]
        lines.append(
            f"{k:<5} {'node' + str(row['node']):<7} {row['role']:<11} "
            f"{row['publish_stall_s'] if row['publish_stall_s'] is not None else '-':>15} "
            f"{idle if idle is not None else '> 120':>17}"
        )
    lines.append(
        f"publish wait p50 {r['publish_stall_p50_s']} s, max {r['publish_stall_max_s']} s; "
        f"decisions idle p50 {r['decisions_idle_p50_s']} s, max "
        f"{r['decisions_idle_max_s']} s; {r['undelivered']} undelivered; verify "
        + ("clean" if not r["violations"] else f"{r['violations']} violations")
    )
    return "\n".join(lines)
