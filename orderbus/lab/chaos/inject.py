"""The fault injector of `orderbus chaos`: kills, pauses and restarts workers, brokers and
PostgreSQL, and on hosts of their own cuts and degrades their links, as the plan says, one at a
time, and always undoes each fault."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra import netns, procs
from infra.kafka import cluster
from infra.kafka.probe import controller, leader, wait_broker
from infra.postgres import server
from infra.postgres.databases import DATABASE
from infra.procs import InfraError, reap_child, signal_if_alive
from orderbus.lab.chaos.plan import CLOCK_SKEW_S, LOSS_PERCENT, MIN_GAP_S, Planned
from orderbus.lab.sandbox import Sandbox
from orderbus.ops.supervise import Child
from topics.catalogue import TX_LOG
from workers.main import PIPELINE

# wall-clock faults for one process, from Debian's libfaketime (the thread-safe build)
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


@dataclass
class Fault:
    kind: str
    target: str
    at_s: float
    hold_s: float
    role: str = ""  # broker-kill: controller / leader of tx.log[p] / any
    lifted_s: float | None = None  # when it was undone (SIGCONT, restarted and caught up)
    recovery_s: float | None = None
    stalled_partitions: list[int] = field(default_factory=list)
    stalled_before: list[int] = field(default_factory=list)  # already without decisions at at_s
    # the longest an order published while the fault was on waited for its acknowledgement
    publish_stall_s: float | None = None
    note: str = ""


class Injector(threading.Thread):
    """Injects the planned faults in order, never two at once, and always undoes each one."""

    def __init__(
        self, sb: Sandbox, planned: list[Planned], t0: float, log: Callable[[str], None]
    ) -> None:
        super().__init__(daemon=True)
        self.sb, self.planned, self.t0, self.log = sb, planned, t0, log
        self.layout = sb.layout
        self.faults: list[Fault] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.lifted_at = 0.0  # seconds after t0 the last fault was undone

    def now(self) -> float:
        return time.monotonic() - self.t0

    @property
    def done(self) -> bool:
        return not self.is_alive()

    def run(self) -> None:
        try:
            for p in self.planned:
                # the plan's own spacing, kept even when an earlier fault took longer to undo
                start = max(p.at_s, self.lifted_at + MIN_GAP_S)
                if self.halt.wait(max(0.0, start - self.now())):
                    return
                fault = getattr(self, "_" + p.kind.replace("-", "_"))(p)
                fault.lifted_s = round(self.now(), 2)
                self.lifted_at = fault.lifted_s
                self.log(
                    f"  {fault.at_s:6.1f}s  {fault.kind} {fault.target}: lifted at "
                    f"{fault.lifted_s:.1f}s{'; ' + fault.note if fault.note else ''}"
                )
        except BaseException as e:  # reported by the caller; the thread must not die silently
            self.error = e

    def _fault(self, p: Planned, target: str, role: str = "") -> Fault:
        f = Fault(p.kind, target, round(self.now(), 2), p.hold_s, role)
        self.faults.append(f)
        return f

    # -- workers
    def _live_child(
        self, pick: float, wanted: Callable[[Child], bool] = lambda child: True
    ) -> Child:
        live = sorted(
            (c for c in self.sb.sup.children if c.proc and c.proc.poll() is None and wanted(c)),
            key=lambda c: (PIPELINE.index(c.name), c.instance),
        )
        if not live:
            raise InfraError("no live worker instance to inject a fault into")
        return live[int(pick * len(live))]

    def _worker_kill(self, p: Planned) -> Fault:
        child = self._live_child(p.pick)
        old = child.proc
        assert old is not None  # _live_child picks one with a running process
        os.kill(old.pid, signal.SIGKILL)
        f = self._fault(p, child.label)
        deadline = time.monotonic() + 30
        while child.proc is old and time.monotonic() < deadline:  # the supervisor restarts it
            time.sleep(0.1)
        if child.proc is old:
            f.note = "not restarted within 30 s"
        return f

    def _worker_pause(self, p: Planned) -> Fault:
        child = self._live_child(p.pick)
        assert child.proc is not None  # _live_child picks one with a running process
        pid = child.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            f = self._fault(p, child.label)
            self.halt.wait(p.hold_s)
        finally:
            signal_if_alive(pid, signal.SIGCONT)
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
        f.note = wait_broker(self.sb.settings.kafka(), self.layout, node)
        return f

    def _broker_pause(self, p: Planned) -> Fault:
        node = list(self.layout.nodes)[int(p.pick * self.layout.brokers)]
        pid = procs.running(cluster.pidfile(self.layout, node))
        if pid is None:
            raise InfraError(f"Kafka node {node} is not running; refusing to inject more faults")
        os.kill(pid, signal.SIGSTOP)
        try:
            f = self._fault(
                p, f"node{node}", "controller" if node == controller(self.layout) else ""
            )
            self.halt.wait(p.hold_s)
        finally:
            signal_if_alive(pid, signal.SIGCONT)
        f.note = wait_broker(self.sb.settings.kafka(), self.layout, node)
        return f

    def _aim(self, p: Planned) -> tuple[int, str]:
        nodes = list(self.layout.nodes)
        if p.aim == "controller":
            node = controller(self.layout)
            if node is not None:
                return node, "controller"
        if p.aim == "leader":
            part = int(p.pick * self.sb.settings.partitions)
            node = leader(self.sb.settings.kafka(), self.sb.settings.names.topic(TX_LOG), part)
            if node is not None:
                return node, f"leader of tx.log[{part}]"
        node = nodes[int(p.pick * len(nodes))]
        return node, "controller" if node == controller(self.layout) else ""

    # -- a wrong clock
    def _clock_ahead(self, p: Planned) -> Fault:
        return self._clock(p, f"+{CLOCK_SKEW_S}s")

    def _clock_behind(self, p: Planned) -> Fault:
        return self._clock(p, f"-{CLOCK_SKEW_S}s")

    def _clock(self, p: Planned, offset: str) -> Fault:
        """An intake or coordinator instance runs a while on a host whose time is `offset` off."""
        if not Path(FAKETIME).exists():
            raise InfraError(
                f"{p.kind} needs libfaketime ({FAKETIME}): make install puts it in, as root"
            )
        child = self._live_child(p.pick, lambda c: c.name in ("intake", "coordinator"))
        skewed = {"LD_PRELOAD": FAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        self.sb.sup.hold(child)
        child.env = skewed
        self.sb.sup.release(child)
        try:
            f = self._fault(p, child.label, offset)
            self.halt.wait(p.hold_s)
        finally:
            self.sb.sup.hold(child)
            child.env = {}
            self.sb.sup.release(child)
        return f

    # -- the network, on hosts of their own (infra/netns.py)
    def _net_broker(self, p: Planned) -> Fault:
        node = list(self.layout.nodes)[int(p.pick * self.layout.brokers)]
        return self._cut_broker(p, node, inbound=True)

    def _net_oneway(self, p: Planned) -> Fault:
        node = list(self.layout.nodes)[int(p.pick * self.layout.brokers)]
        return self._cut_broker(p, node, inbound=False)

    def _net_controller(self, p: Planned) -> Fault:
        node = controller(self.layout) or 1
        return self._net(
            p,
            self.layout.node_ns(node),
            lambda ns: netns.cut(
                ns, [f"{netns.SUBNET}.0/24"]
            ),  # every other host; its own loopback stays
            f"node{node}",
            "controller",
            broker=node,
        )

    def _cut_broker(self, p: Planned, node: int, inbound: bool) -> Fault:
        peers = [self.layout.node_host(n) for n in self.layout.nodes if n != node]
        role = "controller" if node == controller(self.layout) else ""
        return self._net(
            p,
            self.layout.node_ns(node),
            lambda ns: netns.cut(ns, peers, inbound=inbound),
            f"node{node}",
            role,
            node,
        )

    def _net_worker_kafka(self, p: Planned) -> Fault:
        child = self._live_child(p.pick)
        brokers = [self.layout.node_host(n) for n in self.layout.nodes]
        return self._net(p, child.namespace, lambda ns: netns.cut(ns, brokers), child.label)

    def _net_worker_pg(self, p: Planned) -> Fault:
        child = self._live_child(p.pick, lambda c: c.name in DATABASE)
        return self._net(
            p, child.namespace, lambda ns: netns.cut(ns, [self.layout.pg_host]), child.label
        )

    def _net_loss(self, p: Planned) -> Fault:
        child = self._live_child(p.pick)
        return self._net(p, child.namespace, lambda ns: netns.lossy(ns, LOSS_PERCENT), child.label)

    def _net(
        self,
        p: Planned,
        ns: str | None,
        apply: Callable[[str], None],
        target: str,
        role: str = "",
        broker: int = 0,
    ) -> Fault:
        if ns is None:
            raise InfraError(f"{p.kind} needs hosts of their own: `orderbus up --hosts`")
        apply(ns)
        try:
            f = self._fault(p, target, role)
            self.halt.wait(p.hold_s)
        finally:
            netns.heal(ns)
        if broker:
            f.note = wait_broker(self.sb.settings.kafka(), self.layout, broker)
        return f

    # -- PostgreSQL
    def _pg_restart(self, p: Planned) -> Fault:
        f = self._fault(p, "postgresql")
        try:
            server.stop(self.layout)  # fast shutdown: every session is cut at once
            self.halt.wait(p.hold_s)
        finally:
            server.restart(self.layout)
        return f
