"""The Kafka clients of the loop (workers/runtime/loop.py): its consumer group settings and the
consumer's and producer's configuration, each non-default setting with its reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from topics.producer import DURABLE
from workers.runtime.db import RETRY_S
from workers.runtime.settings import Settings

WATCH_EVERY_S = 5.0  # how often the loop's watchdog looks
# a dead member's partitions wait out its session: 3 s makes failover ~3.5 s (6 s made it ~9 s);
# the brokers' group.min.session.timeout.ms allows it (infra/kafka/cluster.py)
SESSION_TIMEOUT_MS = 3_000
HEARTBEAT_MS = 500


@dataclass(frozen=True)
class LoopConfig:
    group: str
    instance: str
    batch_max: int = 1000
    poll_timeout_s: float = 0.05
    # an owned partition with records behind it that makes no progress for this long ends the
    # process, to be restarted (workers/runtime/liveness.py says what progress is, and why
    # waiting on the database is not a stall). A healthy batch takes ~0.1 s and one broker down
    # holds deliveries for seconds; at 90 s a long chaos run stood still for 60 s with several
    # workers hung after a broker kill
    stall_s: float = 30.0
    session_timeout_ms: int = SESSION_TIMEOUT_MS
    heartbeat_ms: int = HEARTBEAT_MS
    protocol: str = "classic"  # or "consumer" (KIP-848)
    # classic protocol with group.instance.id: a restarted instance takes its partitions back
    # without a rebalance, but at a 3 s session that gains nothing measurable, and after a group
    # coordinator broker dies librdkafka fences static members again and again
    # (confluentinc/librdkafka#3437; 15-minute chaos runs stalled on it), so it is opt-in
    static: bool = False


def consumer_config(settings: Settings, cfg: LoopConfig) -> dict[str, Any]:
    conf = settings.kafka(
        **{
            "group.id": cfg.group,
            "client.id": f"{cfg.group}-{cfg.instance}",
            "isolation.level": "read_committed",  # never act on an aborted transaction's output
            "enable.auto.commit": False,  # committed once the batch's outputs are acknowledged
            # a new group starts from the beginning: nothing skipped
            "auto.offset.reset": "earliest",
            # between two polls a batch may wait out its database's retry budget, with a stall short
            # of the watchdog's limit before and after it; any longer, the watchdog or the database
            # error has ended the process. Past this interval the group would hand a live instance's
            # partitions to another mid-batch (its offset commit would then be refused and the batch
            # read again by the new owner: harmless, but wasted)
            "max.poll.interval.ms": int((RETRY_S + 2 * (cfg.stall_s + WATCH_EVERY_S)) * 1000),
            # a fetch returns as soon as a record is there (fetch.min.bytes=1): the wait only bounds
            # an idle partition's round trips, each a TLS request the broker pays for
            "fetch.wait.max.ms": 500,
        }
    )
    if cfg.protocol == "consumer":
        conf["group.protocol"] = "consumer"  # timeouts and assignment are the broker's (KIP-848)
    else:
        conf.update(
            {
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": cfg.session_timeout_ms,
                "heartbeat.interval.ms": cfg.heartbeat_ms,
            }
        )
        if cfg.static:
            conf["group.instance.id"] = f"{cfg.group}-{cfg.instance}"
    return conf


def producer_config(settings: Settings, cfg: LoopConfig) -> dict[str, Any]:
    return settings.kafka(**{"client.id": f"{cfg.group}-{cfg.instance}", **DURABLE})
