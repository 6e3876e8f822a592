"""The local KRaft cluster: combined broker+controller nodes on loopback, one process each."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from infra import netns, procs, variables
from infra.kafka import security
from infra.kafka.jars import ensure_jars
from infra.layout import HOST, Layout
from infra.procs import InfraError

LOG4J = Path(__file__).with_name("log4j2.yaml")


def replication(layout: Layout) -> tuple[int, int]:
    """(replication factor, min.insync.replicas): 3/2 on three nodes, 1/1 on a single one."""
    rf = min(3, layout.brokers)
    return rf, (2 if rf >= 3 else 1)


def properties(layout: Layout, node: int) -> str:
    rf, min_isr = replication(layout)
    voters = ",".join(
        f"{n}@{layout.node_host(n)}:{layout.controller_port(n)}" for n in layout.nodes
    )
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node}",
            f"controller.quorum.voters={voters}",
            "controller.listener.names=CONTROLLER",
            *security.node_properties(layout, node),
            f"log.dirs={layout.node_dir(node) / 'data'}",
            # every topic comes from the catalogue in topics/, so none is ever born with RF 1
            "auto.create.topics.enable=false",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={rf}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min_isr}",
            # 50 partitions each (the defaults) make the first group and first transaction slow to
            # start
            "offsets.topic.num.partitions=12",
            "transaction.state.log.num.partitions=12",
            "unclean.leader.election.enable=false",
            "group.initial.rebalance.delay.ms=0",
            # a SIGKILLed worker's partitions stay idle for its session timeout at least; the
            # classic protocol's floor (6 s by default) would make that the failover time
            "group.min.session.timeout.ms=3000",
            # a killed broker is fenced (and its partitions led elsewhere) after 4 s, not the
            # default
            # 9: with 6 s a producer waited up to 12.7-16.1 s per kill, with 4 s 8.3-9.5 s (README)
            "broker.heartbeat.interval.ms=500",
            "broker.session.timeout.ms=4000",
            # the consumer rebalance protocol (KIP-848) keeps member timeouts on the broker, with a
            # 45 s default and floor; workers want a dead member's partitions back in seconds
            "group.consumer.min.session.timeout.ms=3000",
            "group.consumer.session.timeout.ms=3000",
            "group.consumer.min.heartbeat.interval.ms=500",
            "group.consumer.heartbeat.interval.ms=500",
            # the cleaner takes a fixed 128 MiB of heap otherwise
            "log.cleaner.dedupe.buffer.size=33554432",
            "",
        ]
    )


def _java(layout: Layout, main: str, *args: str, node: int | None = None) -> list[str]:
    lib = ensure_jars(layout)
    logs = layout.node_dir(node) / "logs" if node else layout.kafka_dir / "tool-logs"
    # read when a broker starts, not at import
    broker_heap = variables.KAFKA_HEAP.get(os.environ)
    heap = [f"-Xmx{broker_heap}", "-Xms256m"] if node else ["-Xmx256m"]
    return [
        "java",
        *heap,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J}",
        f"-Dkafka.logs.dir={logs}",
        "-cp",
        f"{lib}/*",
        main,
        *args,
    ]


def cluster_id(layout: Layout) -> str:
    """The cluster id is made once and kept: a node formatted with another id cannot join."""
    path = layout.kafka_dir / "cluster.id"
    if path.exists():
        return path.read_text().strip()
    out = subprocess.run(
        _java(layout, "kafka.tools.StorageTool", "random-uuid"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    layout.kafka_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(out + "\n")
    return out


def _meta_cluster_id(node_dir: Path) -> str | None:
    meta = node_dir / "data" / "meta.properties"
    if not meta.exists():
        return None
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    raise InfraError(
        f"{meta} has no cluster.id: the data directory is damaged. Move "
        f"{node_dir} aside (nothing was deleted) or run `orderbus down --purge`"
    )


def prepare(layout: Layout) -> None:
    """Write each node's properties and format its storage once."""
    cid = cluster_id(layout)
    for node in layout.nodes:
        nd = layout.node_dir(node)
        (nd / "logs").mkdir(parents=True, exist_ok=True)
        props = nd / "server.properties"
        props.touch()
        props.chmod(0o600)  # it holds the node's passwords
        props.write_text(properties(layout, node))
        found = _meta_cluster_id(nd)
        if found == cid:
            continue
        if found is not None:
            raise InfraError(
                f"{nd} belongs to Kafka cluster {found}, not {cid}: refusing to touch "
                "it. Move it aside or run `orderbus down --purge` to start clean"
            )
        # the arguments carry the first passwords: in a 0600 file, not on the command line
        with tempfile.NamedTemporaryFile("w", dir=nd, suffix=".args") as args:
            args.write(
                "\n".join(
                    f'"{a}"'
                    for a in (
                        "kafka.tools.StorageTool",
                        "format",
                        "-t",
                        cid,
                        "-c",
                        str(props),
                        "-g",
                        *security.format_args(layout),
                    )
                )
                + "\n"
            )
            args.flush()
            proc = subprocess.run(_java(layout, f"@{args.name}"), capture_output=True, text=True)
        if proc.returncode != 0:
            raise InfraError(f"formatting {nd} failed:\n{proc.stdout}{proc.stderr}")


def pidfile(layout: Layout, node: int) -> Path:
    return layout.node_dir(node) / "kafka.pid"


def start(layout: Layout) -> list[int]:
    """Start every node that is not running; all together, since a 3-voter quorum needs two."""
    todo = [n for n in layout.nodes if not procs.running(pidfile(layout, n))]
    for node in todo if not layout.hosts else ():  # check every port before starting anything
        for port in (layout.broker_port(node), layout.controller_port(node)):
            if not procs.port_free(port):
                raise InfraError(
                    f"port {port} on {HOST} is taken by another program: stop it, or "
                    "choose other ports with ORDERBUS_KAFKA_PORT"
                )
    for node in todo:
        start_node(layout, node)
    return todo


def start_node(layout: Layout, node: int) -> None:
    argv = _java(layout, "kafka.Kafka", str(layout.node_dir(node) / "server.properties"), node=node)
    procs.start(
        netns.inside(layout.node_ns(node), argv),
        pidfile(layout, node),
        layout.node_dir(node) / "logs" / "stdout.log",
        nice=nice(),
    )


def nice(env: Mapping[str, str] | None = None) -> int:
    """The brokers' CPU priority: ORDERBUS_KAFKA_NICE, else -10 where this process may raise
    priority (root with CAP_SYS_NICE). They share the machine with the pipeline and the load; a
    broker starved of CPU misses its heartbeats and stretches a failover (README, Chaos)."""
    given: int | None = variables.KAFKA_NICE.get(os.environ if env is None else env)
    if given is not None:
        return given
    return -10 if may_raise_priority() else 0


def may_raise_priority() -> bool:
    # being root is not enough: a container may withhold CAP_SYS_NICE, and nice(1) then warns
    # and runs the program at the old priority
    probe = subprocess.run(["nice", "-n", "-1", "nice"], capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == str(os.nice(0) - 1)


def admin(client: dict[str, Any], **extra: Any) -> AdminClient:
    """A quiet admin client with short timeouts, for probing a cluster that may be half up."""
    conf: dict[str, Any] = {
        **client,
        "socket.timeout.ms": 3000,
        "log_level": 3,
        "logger": _quiet,
        **extra,
    }
    return AdminClient(conf)


class _Quiet:
    """librdkafka logs every refused connection while brokers start; readiness reports instead."""

    def log(self, *args: object, **kwargs: object) -> None:
        pass

    def __getattr__(self, name: str) -> Callable[..., None]:
        return self.log


_quiet = _Quiet()


def serves_metadata(layout: Layout, node: int, timeout: float = 2.0) -> bool:
    """True when this node answers a metadata request and knows every node of the cluster."""
    try:
        one = {
            **security.client(layout),
            "bootstrap.servers": f"{layout.node_host(node)}:{layout.broker_port(node)}",
        }
        md = admin(one).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return set(md.brokers) >= set(layout.nodes)


def wait_ready(layout: Layout, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    pending = set(layout.nodes)
    while pending:
        for node in sorted(pending):
            if not procs.running(pidfile(layout, node)):
                raise InfraError(
                    f"Kafka node {node} exited during start-up; its log says:\n"
                    + procs.tail(layout.node_dir(node) / "logs" / "server.log")
                )
            if serves_metadata(layout, node):
                pending.discard(node)
        if pending and time.monotonic() > deadline:
            raise InfraError(
                f"Kafka nodes {sorted(pending)} did not serve metadata within "
                f"{timeout_s:.0f}s; see {layout.kafka_dir}/node*/logs/server.log"
            )
        if pending:
            time.sleep(0.3)


def stop(layout: Layout, grace_s: float = 30.0) -> list[int]:
    # signal every node first, so their controlled shutdowns overlap instead of queueing
    running = {n: procs.running(pidfile(layout, n)) for n in layout.nodes}
    stopped = [n for n, pid in running.items() if pid]
    for pid in running.values():
        if pid:
            os.kill(pid, signal.SIGTERM)
    for node in layout.nodes:
        procs.stop(pidfile(layout, node), grace_s=grace_s)
    return stopped
