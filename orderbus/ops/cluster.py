"""`orderbus up | down | status`: the local Kafka cluster and PostgreSQL instance."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import KafkaException

from infra import netns, procs
from infra.kafka import cluster as kafka
from infra.kafka import probe, security
from infra.layout import KAFKA_VERSION, Layout, ephemeral_range
from infra.postgres import databases
from infra.postgres import server as postgres
from infra.procs import InfraError
from infra.secret import secret
from topics import acl
from topics import admin as topic_admin
from topics.catalogue import ACCESS, Names
from workers.runtime.settings import SERVICES, Settings, SettingsError
from workers.runtime.signing import AUTHORS


def up(
    settings: Settings,
    brokers: int,
    insecure: bool = False,
    hosts: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    layout = settings.layout(brokers, secure=not insecure, hosts=hosts or settings.hosts)
    t0 = time.monotonic()
    with procs.exclusive(layout.home / ".lock", "up"):
        _refuse_other_shape(layout)
        _warn_ephemeral(layout, log)
        if insecure:
            log(
                "WARNING --insecure: Kafka without TLS, authentication or ACLs; any local process "
                "can read every topic and write tx.log. For experiments only"
            )
        layout.home.mkdir(parents=True, exist_ok=True)
        if layout.hosts:
            if why := netns.available():
                raise InfraError(f"up --hosts: {why}")
            others = [] if _state(layout).get("hosts") else netns.namespaces()
            if others:
                raise InfraError(
                    f"up --hosts: the hosts {', '.join(others)} exist already, another "
                    "home's: one cluster on hosts of their own per machine (`orderbus down` it "
                    "first)"
                )
            layout.ensure_hosts()
        for author in AUTHORS:
            secret(layout, f"signing-{author}", suffix=".key")
        if layout.secure:
            security.check_secrets(layout)
            security.ensure_tls(layout)
        kafka.prepare(layout)
        postgres.prepare(layout, log)
        started = kafka.start(layout)
        pg_started = postgres.start(layout)
        with ThreadPoolExecutor(2) as pool:
            waits = [
                pool.submit(kafka.wait_ready, layout),
                pool.submit(postgres.wait_ready, layout),
            ]
            for w in waits:
                w.result()
        migrated = {s: databases.ensure(layout, s, s) for s in SERVICES}
        _write_state(layout, settings.partitions)
        users = security.ensure_users(layout, list(ACCESS))
        client = security.client(layout)
        reports = topic_admin.ensure(client, names=settings.names)
        acls = acl.ensure(client, Names()) if layout.secure else acl.Drift([], [], [])
    changed = bool(
        started
        or pg_started
        or any(migrated.values())
        or users
        or acls.missing
        or acls.extra
        or any(r.action == "created" for r in reports)
    )
    for g in acls.foreign:
        log(
            f"WARNING ACL not from the catalogue applies to {g.name}: {g.permission} "
            f"{g.operation} for {g.principal} from {g.host} (see `orderbus acl`)"
        )
    for r in reports:
        if r.action == "mismatch":
            log(f"WARNING topic {r.name} differs from the catalogue: {'; '.join(r.problems)}")
    summary = {
        "changed": changed,
        "seconds": round(time.monotonic() - t0, 1),
        "brokers_started": started,
        "postgres_started": pg_started,
        "migrations": {k: v for k, v in migrated.items() if v},
        "topics": {r.name: r.action for r in reports},
        "bootstrap": layout.bootstrap,
        "security": "sasl_ssl" if layout.secure else "plaintext",
        "users_created": users,
        "acls_created": len(acls.missing),
        "acls_deleted": len(acls.extra),
        "acls_foreign": len(acls.foreign),
        "postgres_port": layout.pg_port,
        "home": str(layout.home),
    }
    if changed:
        log(
            f"up in {summary['seconds']}s: Kafka {KAFKA_VERSION} x{layout.brokers} at "
            f"{layout.bootstrap} "
            f"({'SASL/SCRAM over TLS, ACLs' if layout.secure else 'PLAINTEXT'}); "
            f"PostgreSQL on {layout.pg_host}:{layout.pg_port}; data in {layout.home}"
        )
    else:
        log("already up: nothing changed")
    return summary


def _warn_ephemeral(layout: Layout, log: Callable[[str], None]) -> None:
    span = ephemeral_range()
    inside = [p for p in layout.ports if span and span[0] <= p <= span[1]]
    if span and inside:
        log(
            f"WARNING ports {inside} lie in this machine's ephemeral port range "
            f"{span[0]}-{span[1]}: "
            "a client reconnecting to a stopped node can take its port and keep it from "
            "restarting; prefer ports below it (ORDERBUS_KAFKA_PORT, ORDERBUS_PG_PORT)"
        )


def _refuse_other_shape(layout: Layout) -> None:
    state = _state(layout)
    made_secure = state.get("security", "plaintext") == "sasl_ssl"
    if (
        state
        and made_secure != layout.secure
        and any((layout.node_dir(n) / "data" / "meta.properties").exists() for n in layout.nodes)
    ):
        made = "with security on" if made_secure else "--insecure"
        raise InfraError(
            f"{layout.home} holds a cluster made {made}; `up"
            f"{'' if layout.secure else ' --insecure'}` would not match it. Run it "
            f"{'without' if made_secure else 'with'} --insecure, or `orderbus down "
            "--purge` first to start over in the other mode"
        )
    if (
        state.get("hosts", False) != layout.hosts
        and (layout.node_dir(1) / "data" / "meta.properties").exists()
    ):
        raise InfraError(
            f"{layout.home} holds a cluster made {'with' if state.get('hosts') else 'without'} "
            "--hosts; its nodes' addresses are in its data: `orderbus down --purge` first to start "
            "over"
        )
    if not state or state.get("brokers") == layout.brokers:
        return
    old = Layout(
        home=layout.home,
        brokers=state["brokers"],
        kafka_base_port=state.get("kafka_base_port", layout.kafka_base_port),
    )
    if any(procs.running(kafka.pidfile(old, n)) for n in old.nodes) or any(
        (old.node_dir(n) / "data" / "meta.properties").exists() for n in old.nodes
    ):
        raise InfraError(
            f"{layout.home} holds a {state['brokers']}-broker cluster; `up --brokers "
            f"{layout.brokers}` would not match it. Use `--brokers {state['brokers']}`, "
            "or `orderbus down --purge` first to start over"
        )


def _state(layout: Layout) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(layout.state_file.read_text())
        return state
    except (FileNotFoundError, ValueError):
        return {}


def _write_state(layout: Layout, partitions: int) -> None:
    layout.state_file.write_text(
        json.dumps(
            {
                "brokers": layout.brokers,
                "partitions": partitions,  # of every topic, as made
                "kafka_base_port": layout.kafka_base_port,
                "pg_port": layout.pg_port,
                "kafka_version": KAFKA_VERSION,
                "security": "sasl_ssl" if layout.secure else "plaintext",
                "hosts": layout.hosts,  # each node and PostgreSQL in a namespace of its own
            },
            indent=2,
        )
        + "\n"
    )


def down(
    settings: Settings, purge: bool = False, log: Callable[[str], None] = print
) -> dict[str, Any]:
    layout = settings.layout()
    with procs.exclusive(layout.home / ".lock", "down"):
        stopped = kafka.stop(layout)
        pg = postgres.stop(layout)
        if layout.hosts:
            netns.remove_all()  # the nodes', PostgreSQL's and any worker's left behind
        if purge:
            for path in (layout.home, layout.pg_dir):
                shutil.rmtree(path, ignore_errors=True)
    log(
        f"stopped brokers {stopped or 'none'}; PostgreSQL {'stopped' if pg else 'was not running'}"
        + ("; data deleted" if purge else "")
    )
    return {"brokers_stopped": stopped, "postgres_stopped": pg, "purged": purge}


def status(settings: Settings) -> dict[str, Any]:
    layout = settings.layout()
    brokers = []
    controller, urp, md = None, None, None
    try:
        client = kafka.admin(settings.kafka())
        md = client.list_topics(timeout=5)
        # DescribeCluster names a random broker on KRaft: the quorum state on disk names the
        # controller where the nodes are local; elsewhere the answer is all there is
        controller = (
            probe.controller(layout)
            or client.describe_cluster(request_timeout=5).result().controller.id
        )
        urp = sum(
            1
            for t in md.topics.values()
            for p in t.partitions.values()
            if len(p.isrs) < len(p.replicas)
        )
    except (KafkaException, SettingsError):
        pass
    for n in layout.nodes:
        pid = procs.running(kafka.pidfile(layout, n))
        brokers.append(
            {
                "node": n,
                "port": layout.broker_port(n),
                "pid": pid,
                "up": bool(md and n in md.brokers),
                "controller": controller == n,
            }
        )
    pg_pid = postgres.running(layout)
    try:
        postgres.admin_connect(layout, "postgres").close()
        pg_ok = True
    except Exception:
        pg_ok = False
    topics = []
    if md is not None:
        for r in topic_admin.ensure(
            settings.kafka(), create=False, timeout=5, names=settings.names
        ):
            topics.append(
                {
                    "name": r.name,
                    "state": r.action,
                    "problems": list(r.problems),
                    "partitions": len(md.topics[r.name].partitions) if r.name in md.topics else 0,
                }
            )
    return {
        "kafka": {
            "bootstrap": settings.bootstrap,
            "brokers": brokers,
            "controller": controller,
            "under_replicated_partitions": urp,
        },
        "postgres": {"host": layout.pg_host, "port": layout.pg_port, "pid": pg_pid, "up": pg_ok},
        "topics": topics,
    }


def render_status(st: dict[str, Any]) -> str:
    lines = [
        "KAFKA  " + st["kafka"]["bootstrap"],
        f"  {'node':>4}  {'port':>5}  {'pid':>7}  state  role",
    ]
    for b in st["kafka"]["brokers"]:
        lines.append(
            f"  {b['node']:>4}  {b['port']:>5}  {b['pid'] or '-':>7}  "
            f"{'up' if b['up'] else 'DOWN':<5}  {'controller' if b['controller'] else ''}"
        )
    urp = st["kafka"]["under_replicated_partitions"]
    lines.append(f"  under-replicated partitions: {'unknown' if urp is None else urp}")
    pg = st["postgres"]
    lines.append(
        f"POSTGRESQL  {pg['host']}:{pg['port']}  pid {pg['pid'] or '-'}  "
        f"{'up' if pg['up'] else 'DOWN'}"
    )
    lines.append("TOPICS")
    for t in st["topics"]:
        extra = ("  " + "; ".join(t["problems"])) if t["problems"] else ""
        lines.append(f"  {t['name']:<24} {t['partitions']:>3} partitions  {t['state']}{extra}")
    return "\n".join(lines)
