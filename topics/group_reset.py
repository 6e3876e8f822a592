"""Reset a stopped consumer group's offsets the way Kafka's own
`kafka-consumer-groups --reset-offsets` does (`orderbus replay reset`).

The decision (where to move an offset) is a pure function over plain values (`plan_reset`);
`Groups` only reads and writes the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AdminClient,
    OffsetSpec,
)

from topics.lag import committed, group_reader, partitions_of


class ResetError(RuntimeError):
    """A reset that cannot be planned or was refused: a message for the operator."""


@dataclass(frozen=True)
class ResetSpec:
    """One of Kafka's reset scenarios."""

    kind: str  # to-offset | shift-by | to-datetime | to-earliest | to-latest
    value: int = 0  # the offset, the shift, or the time in ms


@dataclass(frozen=True)
class PartitionPlan:
    topic: str
    partition: int
    current: int | None  # committed now (None: nothing committed)
    target: int
    start: int  # log start offset
    end: int  # log end offset (high watermark)
    note: str = ""

    @property
    def lag_before(self) -> int | None:
        return None if self.current is None else self.end - self.current

    @property
    def lag_after(self) -> int:
        return self.end - self.target


def plan_reset(
    spec: ResetSpec,
    topic: str,
    partition: int,
    current: int | None,
    start: int,
    end: int,
    by_time: int | None = None,
) -> PartitionPlan:
    """Where Kafka's ConsumerGroupCommand would move one partition. `by_time` is the offset
    ListOffsets gave for the time (-1 or None: no record at or after it)."""
    note = ""
    if spec.kind == "to-earliest":
        target = start
    elif spec.kind == "to-latest":
        target = end
    elif spec.kind == "to-offset":
        target = spec.value
    elif spec.kind == "shift-by":
        if current is None:
            # Kafka's tool shifts from the reset policy's position; we do not guess
            raise ResetError(
                f"{topic}:{partition} has no committed offset to shift from; use "
                "--to-offset, --to-datetime, --to-earliest or --to-latest"
            )
        target = current + spec.value
    elif spec.kind == "to-datetime":
        if by_time is None or by_time < 0:
            target, note = end, "no record at or after that time: the log end"
        else:
            target = by_time
            if target == start and start > 0:
                note = "the time is before the oldest retained record: the log start"
    else:
        raise ValueError(f"unknown reset {spec.kind!r}")
    if target > end:
        target, note = end, f"{target} is past the log end: clamped to {end}"
    elif target < start:
        target, note = start, f"{target} is before the log start: clamped to {start}"
    return PartitionPlan(topic, partition, current, target, start, end, note)


class Groups:
    """The admin side of a reset: members, committed offsets, log bounds, the commit."""

    def __init__(self, client_config: dict[str, Any], timeout_s: float = 15.0) -> None:
        self.admin = AdminClient({"log_level": 3, **client_config})
        self.client_config = client_config
        self.timeout_s = timeout_s

    def exists(self, group: str) -> bool:
        listed = self.admin.list_consumer_groups(request_timeout=self.timeout_s).result()
        return group in {g.group_id for g in listed.valid}

    def members(self, group: str) -> list[str]:
        """Active members, each as `member-id (client-id@host)`."""
        desc = self.admin.describe_consumer_groups([group], request_timeout=self.timeout_s)[
            group
        ].result()
        return [
            f"{m.group_instance_id or m.member_id} ({m.client_id}@{m.host.lstrip('/')})"
            for m in desc.members
        ]

    def committed(self, group: str) -> dict[tuple[str, int], tuple[int, str]]:
        """(topic, partition) -> (offset, metadata) for everything the group committed."""
        reader = group_reader(self.client_config, group)
        try:
            found = committed(reader, partitions_of(self.admin, self.timeout_s), self.timeout_s)
        finally:
            reader.close()
        return {(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in found}

    def partitions(self, topic: str) -> list[int]:
        meta = self.admin.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ResetError(f"no topic {topic!r} on the cluster")
        return sorted(meta.partitions)

    def offsets(self, tps: list[tuple[str, int]], spec: OffsetSpec) -> dict[tuple[str, int], int]:
        if not tps:
            return {}
        req = {TopicPartition(t, p): spec for t, p in tps}
        futures = self.admin.list_offsets(req, request_timeout=self.timeout_s)
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def plan(
        self, group: str, spec: ResetSpec, wanted: dict[str, list[int] | None]
    ) -> list[PartitionPlan]:
        committed = self.committed(group)
        tps = []
        for topic, parts in wanted.items():
            have = self.partitions(topic)
            bad = sorted(set(parts or ()) - set(have))
            if bad:
                raise ResetError(f"topic {topic!r} has no partition {bad} (it has 0-{max(have)})")
            tps += [(topic, p) for p in (parts or have)]
        # OffsetSpec's class methods are unannotated in confluent-kafka
        starts = self.offsets(tps, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        ends = self.offsets(tps, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        times = (
            self.offsets(tps, OffsetSpec.for_timestamp(spec.value))
            if spec.kind == "to-datetime"
            else {}
        )
        return [
            plan_reset(
                spec,
                t,
                p,
                committed.get((t, p), (None, ""))[0],
                starts[(t, p)],
                ends[(t, p)],
                times.get((t, p)),
            )
            for t, p in tps
        ]

    def commit(self, group: str, plans: list[PartitionPlan]) -> None:
        # metadata is left empty on purpose: the coordinator trusts an offset as folded up to only
        # when it carries its own mark, so after a reset it resumes at the offset its saved state
        # is folded up to, and commits that (workers/coordinator/worker.py take_over, and the
        # loop's assign): it neither re-decides nor skips anything
        tps = [TopicPartition(p.topic, p.partition, p.target) for p in plans]
        fut = self.admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, tps)], request_timeout=self.timeout_s
        )[group]
        try:
            res = fut.result()
        except KafkaException as e:
            raise ResetError(f"the cluster refused the new offsets: {e.args[0].str()}") from None
        failed = [
            f"{tp.topic}:{tp.partition} {tp.error}"
            for tp in res.topic_partitions
            if tp.error is not None
        ]
        if failed:
            raise ResetError("some offsets were not committed: " + "; ".join(failed))
