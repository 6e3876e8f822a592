"""What the cluster looks like from outside: the active controller, a partition's leader, the
under-replicated partitions, a broker back after a fault. `client_config` is a librdkafka client
configuration (Settings.kafka())."""

from __future__ import annotations

import json
import time
from typing import Any

from infra.kafka import cluster
from infra.layout import Layout
from infra.procs import InfraError


def controller(layout: Layout) -> int | None:
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


def wait_broker(client_config: dict[str, Any], layout: Layout, node: int) -> str:
    """Until the node serves metadata again (or fail loudly), then until no partition is
    under-replicated, so the next fault never meets a partition one broker from unavailable.
    Returns a note when that last wait gave up."""
    deadline = time.monotonic() + 120
    while not cluster.serves_metadata(layout, node):
        if time.monotonic() > deadline:
            raise InfraError(
                f"Kafka node {node} did not serve metadata within 120 s after the fault; see its "
                "server.log"
            )
        time.sleep(0.3)
    deadline = time.monotonic() + 60
    while (urp := under_replicated(client_config)) != 0:
        if time.monotonic() > deadline:
            return f"{urp} partitions still under-replicated 60 s after node {node} returned"
        time.sleep(0.5)
    return ""


def leader(client_config: dict[str, Any], topic: str, partition: int) -> int | None:
    try:
        md = cluster.admin(client_config).list_topics(topic, timeout=5)
        return md.topics[topic].partitions[partition].leader
    except Exception:  # a metadata hiccup only means we aim at a random broker instead
        return None


def under_replicated(client_config: dict[str, Any]) -> int | None:
    try:
        md = cluster.admin(client_config).list_topics(timeout=5)
    except Exception:
        return None
    return sum(
        1
        for t in md.topics.values()
        for p in t.partitions.values()
        if len(p.isrs) < len(p.replicas)
    )
