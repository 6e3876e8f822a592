"""Ensure the catalogue on a cluster: create what is missing, report what differs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AdminClient,
    ConfigResource,
    NewTopic,
    TopicMetadata,
)

from topics.catalogue import ALL, Names, Topic


@dataclass(frozen=True)
class TopicReport:
    name: str
    action: str  # created | ok | mismatch | missing
    problems: tuple[str, ...] = ()


def replication_for(broker_count: int, topic: Topic) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a topic on a cluster of `broker_count`."""
    rf = min(topic.replication, broker_count)
    return rf, (2 if rf >= 3 else 1)


def ensure(
    client_config: dict[str, Any],
    topics: tuple[Topic, ...] = ALL,
    timeout: float = 30.0,
    names: Names = Names(),
    create: bool = True,
    brokers: int = 0,
) -> list[TopicReport]:
    """Create missing topics (or report them `missing` when not `create`); compare existing ones
    against the catalogue. Never alters a topic: a wrong partition count or policy is a decision
    for an operator, so it is reported."""
    admin = AdminClient({"log_level": 3, **client_config})
    md = admin.list_topics(timeout=timeout)
    # `brokers`: the cluster's size as configured, where known: a broker down right now must not
    # shrink a new topic's replication
    brokers = max(len(md.brokers), brokers)
    reports, to_create = [], []
    for topic in topics:
        name = names.topic(topic)
        rf, min_isr = replication_for(brokers, topic)
        if name not in md.topics and not create:
            reports.append(TopicReport(name, "missing"))
        elif name not in md.topics:
            to_create.append(
                NewTopic(
                    name,
                    num_partitions=names.partitions,
                    replication_factor=rf,
                    config=topic.configs(min_isr),
                )
            )
            continue
        reports.append(
            TopicReport(
                name, *_compare(admin, md.topics[name], topic, names.partitions, rf, min_isr, name)
            )
        )
    if to_create:
        for name, fut in admin.create_topics(to_create, operation_timeout=timeout).items():
            try:
                fut.result()
                reports.append(TopicReport(name, "created"))
            except KafkaException as e:
                if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                reports.append(TopicReport(name, "ok"))
    return reports


def _compare(
    admin: AdminClient,
    meta: TopicMetadata,
    topic: Topic,
    partitions: int,
    rf: int,
    min_isr: int,
    name: str,
) -> tuple[str, tuple[str, ...]]:
    problems = []
    if len(meta.partitions) != partitions:
        problems.append(f"partitions {len(meta.partitions)}, ORDERBUS_PARTITIONS says {partitions}")
    actual_rf = min(len(p.replicas) for p in meta.partitions.values())
    if actual_rf != rf:
        problems.append(f"replication factor {actual_rf}, catalogue says {rf}")
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result()
    for key, want in topic.configs(min_isr).items():
        have = configs[key].value if key in configs else None
        if have != want:
            problems.append(f"{key}={have}, catalogue says {want}")
    return ("mismatch", tuple(problems)) if problems else ("ok", ())


def delete(client_config: dict[str, Any], names: list[str], timeout: float = 30.0) -> None:
    admin = AdminClient(client_config)
    for fut in admin.delete_topics(names, operation_timeout=timeout).values():
        try:
            fut.result()
        except KafkaException as e:
            if e.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise


def wrong_partitions(
    client_config: dict[str, Any], topics: tuple[str, ...], names: Names, timeout: float = 10.0
) -> dict[str, int]:
    """The topics among `topics` whose partition count is not `names.partitions`, with theirs. A
    worker reading one would take every event for misplaced (signing.placed), so it refuses to
    start instead; a topic not made yet is not counted."""
    md = AdminClient({"log_level": 3, **client_config}).list_topics(timeout=timeout)
    return {
        t: len(md.topics[t].partitions)
        for t in topics
        if t in md.topics
        and md.topics[t].error is None
        and len(md.topics[t].partitions) != names.partitions
    }
