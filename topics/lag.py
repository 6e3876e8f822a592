"""Consumer lag per group, topic and partition, with Burrow's status rules over a sliding window.

Lag is counted exactly as Kafka's `kafka-consumer-groups --describe` counts it: the log-end offset
(high watermark) minus the committed offset. Its age (lag in seconds) is the age of the oldest
message the group has not consumed, read at the committed offset. The rules are a pure function
(`partition_status`) over a window of samples; `LagReader` takes the samples from the cluster;
`backlog` is the one-look form intake's back-pressure uses. Some 340 lines: the rules, the reader
and the report they make are one idea, and each part is small.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Iterable, NamedTuple, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AdminClient,
    OffsetSpec,
)

from topics.catalogue import Names
from topics.read import coordinates

OK, WARN, STALL, STOP, ERR = "OK", "WARN", "STALL", "STOP", "ERR"
STATUSES = (OK, WARN, STALL, STOP, ERR)  # rising severity: a group takes its worst partition's
WINDOW = 10  # samples per partition, as Burrow's default window
READ_BUDGET_S = 3.0  # for reading the oldest unconsumed messages; what is not read by then
# reports lag_seconds unknown rather than holding up the whole report


class Sample(NamedTuple):
    ts: float  # when it was taken, seconds
    committed: int | None  # None: could not be read
    end: int | None  # log-end offset (high watermark); None: could not be read


def partition_status(samples: Sequence[Sample], members: int | None = 1) -> str:
    """Burrow's evaluation rules over one partition's window, oldest sample first. `members` is
    the group's member count now (None when it could not be read)."""
    return judge(samples, members)[0]


def judge(samples: Sequence[Sample], members: int | None = 1) -> tuple[str, str]:
    """partition_status with the rule that gave it, in words, for an operator's screen."""
    offsets = [
        (s.committed, s.end) for s in samples if s.committed is not None and s.end is not None
    ]
    if not samples or len(offsets) < len(samples):
        return ERR, "offsets could not be read"  # offsets that cannot be read are not "fine"
    committed = [c for c, _ in offsets]
    if any(c > e for c, e in offsets):
        return ERR, "committed past the log end: topic truncated or recreated"
    if any(b < a for a, b in pairwise(committed)):
        return ERR, "committed offset went backwards: an offset reset under the group"
    # (a falling log end alone is no error: a sample's end is lowered to its committed offset
    # once only transaction markers are left, see LagReader._settled; a recreated topic shows
    # up as committed > end)
    lags = [e - c for c, e in offsets]
    if 0 in lags:
        return OK, "caught up within the window"  # Burrow's first rule
    moved = committed[-1] != committed[0]
    if members == 0 and not moved:
        return STOP, "no member and no commit, with work waiting"
    if len(samples) < 2:
        return OK, "one look shows no trend yet"
    if not moved:
        return STALL, "members present but the committed offset does not move"
    # Burrow also warns on a fixed lag; a consumer keeping pace at a constant lag is not
    # falling behind, and on a short window that would be a noisy warning, so: growing only
    if all(b >= a for a, b in pairwise(lags)) and lags[-1] > lags[0]:
        return WARN, f"lag grew at every look of the window ({lags[0]} to {lags[-1]})"
    return OK, "committing, and the lag is not growing"


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=STATUSES.index, default=OK)


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int | None
    lag: int | None
    lag_seconds: float | None  # None: the oldest unconsumed message could not be read in time
    status: str
    reason: str = ""  # the rule that gave the status (judge)


@dataclass(frozen=True)
class GroupLag:
    group: str
    status: str
    lag: int
    members: int | None
    reason: str = ""  # its worst partition's, or why its offsets could not be read


@dataclass(frozen=True)
class Report:
    partitions: list[PartitionLag]
    groups: list[GroupLag]
    under_replicated: dict[str, int]  # topic -> partitions with fewer in-sync replicas
    errors: dict[str, str]  # group -> why its offsets could not be read


class LagError(RuntimeError):
    """The cluster could not be asked: a message for the operator."""


class NotFound(LagError, LookupError):
    """The group or topic asked about does not exist on the cluster."""


NOTHING = -1  # no consumable message between the committed offset and the end


class LagReader:
    """Samples committed and log-end offsets and keeps a window per partition in memory."""

    def __init__(
        self,
        client_config: dict[str, Any],
        names: Names = Names(),
        window: int = WINDOW,
        timeout_s: float = 10.0,
    ) -> None:
        self.window, self.timeout_s = window, timeout_s
        self.client_config = client_config
        self._readers: dict[str, Consumer] = {}  # group -> its group_reader
        self._group_topics: dict[str, set[str]] = {}  # group -> the topics it was seen reading
        self.admin = AdminClient({"log_level": 3, **client_config})
        base = {
            **client_config,
            "log_level": 3,
            "enable.auto.commit": False,
            "group.id": names.monitor_group(),
        }
        # the high watermark, as Kafka's tool (read_committed would give the last stable offset)
        self._ends = Consumer({**base, "isolation.level": "read_uncommitted"})
        # what the group will actually consume next: its consumers read committed records only,
        # so aborted records and transaction markers are not "unconsumed messages"
        self._reader = Consumer(
            {
                **base,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,  # says "nothing more" at the end
                "auto.offset.reset": "earliest",  # committed below the log start
                "queued.min.messages": 1,  # one message is all we want
                # answers "nothing more" at once instead of after 0.5 s of
                # waiting per fetch: a single run reads ~50 partitions in 0.1 s
                "fetch.wait.max.ms": 10,
                "fetch.error.backoff.ms": 10,
                "fetch.queue.backoff.ms": 0,
            }
        )
        self.windows: dict[tuple[str, str, int], deque[Sample]] = {}  # as the rules see them
        self.latest: dict[tuple[str, str, int], Sample] = {}  # as read, for display
        self.members: dict[str, int | None] = {}
        self.group_errors: dict[str, str] = {}
        # (group, topic, partition) -> (committed, end) at which nothing consumable was left:
        # only transaction markers or aborted records, which a read_committed group never
        # "consumes" as messages, so the lag of 1 they leave after every transaction is no stall
        self._settled: dict[tuple[str, str, int], tuple[int, int]] = {}
        self._timestamps: dict[tuple[str, int, int], int] = {}  # (topic, partition, offset) -> ms

    def close(self) -> None:
        self._ends.close()
        self._reader.close()
        for reader in self._readers.values():
            reader.close()

    def groups(self, group: str | None = None, prefix: str = "") -> list[str]:
        try:
            listed = self.admin.list_consumer_groups(request_timeout=self.timeout_s).result()
        except KafkaException as e:
            raise LagError(f"cannot list consumer groups: {e.args[0].str()}") from None
        names = sorted(g.group_id for g in listed.valid)
        if group is not None:
            if group not in names:
                raise NotFound(f"no consumer group {group!r} on the cluster")
            return [group]
        return [g for g in names if g.startswith(prefix)]

    def check_topic(self, topic: str) -> None:
        try:
            meta = self.admin.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
        except KafkaException as e:
            raise LagError(f"cannot read topic metadata: {e.args[0].str()}") from None
        if meta is None or meta.error is not None:
            raise NotFound(f"no topic {topic!r} on the cluster")

    def sample(self, groups: list[str], topic: str | None = None) -> None:
        """One look at every group's committed offsets and the log ends; appends to the windows."""
        now = time.time()
        # (confluent-kafka refuses to describe an empty list: a pipeline no worker joined yet)
        described = (
            self.admin.describe_consumer_groups(groups, request_timeout=self.timeout_s)
            if groups
            else {}
        )
        cluster = self._cluster()
        ends: dict[tuple[str, int], int | None] = {}
        seen = set()
        self.group_errors, self.members = {}, {}
        for g in set(self._readers) - set(groups):  # a group gone, or no longer asked for
            self._readers.pop(g).close()
            self._group_topics.pop(g, None)
        for g in groups:
            assigned: set[str] = set()
            try:
                desc = described[g].result()
                self.members[g] = len(desc.members)
                assigned = {tp.topic for m in desc.members for tp in m.assignment.topic_partitions}
            except KafkaException as e:
                self.members[g] = None
                self.group_errors[g] = f"cannot describe the group: {e.args[0].str()}"
            # the topics its members read now or did at an earlier look; every topic for a
            # group never seen with members (its consumers stopped, say)
            known = self._group_topics.setdefault(g, set())
            known |= assigned
            topics = {
                t: n for t, n in cluster.items() if (t in known or not known) and topic in (None, t)
            }
            if g not in self._readers:
                self._readers[g] = group_reader(self.client_config, g)
            try:
                found = committed(self._readers[g], topics, self.timeout_s)
            except KafkaException as e:
                self.group_errors[g] = f"cannot read committed offsets: {e.args[0].str()}"
                continue
            known |= {tp.topic for tp in found}
            for tp in found:
                tpk = (tp.topic, tp.partition)
                if tpk not in ends:
                    ends[tpk] = self._end(*tpk)
                key = (g, tp.topic, tp.partition)
                seen.add(key)
                self._append(key, Sample(now, tp.offset, ends[tpk]))
        # forget what is gone (a group deleted, its offsets expired) so windows never grow stale
        for key in set(self.windows) - seen:
            del self.windows[key], self.latest[key]
            self._settled.pop(key, None)

    def _cluster(self) -> dict[str, int]:
        try:
            return partitions_of(self.admin, self.timeout_s)
        except KafkaException as e:
            raise LagError(f"cannot read topic metadata: {e.args[0].str()}") from None

    def _end(self, topic: str, partition: int) -> int | None:
        try:
            _, high = self._ends.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self.timeout_s, cached=False
            )
            return high
        except KafkaException:
            return None  # topic deleted under the group's offsets, or a partition offline

    def _append(self, key: tuple[str, str, int], s: Sample) -> None:
        self.latest[key] = s
        if s.committed is not None and self._settled.get(key) == (s.committed, s.end):
            s = s._replace(end=s.committed)  # nothing consumable left: caught up for the rules
        self.windows.setdefault(key, deque(maxlen=self.window)).append(s)

    def report(self) -> Report:
        now_ms = int(time.time() * 1000)
        wanted = [
            (t, p, s.committed)
            for (g, t, p), s in self.latest.items()
            if s.committed is not None and s.end is not None and s.end > s.committed
        ]
        found = self._first_timestamps(wanted)
        partitions = []
        for key, raw in sorted(self.latest.items()):
            g, t, p = key
            lag: int | None = None
            ts: int | None = None
            if raw.committed is not None and raw.end is not None:
                lag = raw.end - raw.committed
                ts = found.get((t, p, raw.committed)) if lag else None
                if ts == NOTHING:
                    self._settle(key, raw.committed, raw.end)
            seconds: float | None
            if lag == 0 or ts == NOTHING:
                seconds = 0.0
            else:
                seconds = None if ts is None else round(max(0, now_ms - ts) / 1000, 3)
            status, reason = judge(self.windows[key], self.members.get(g))
            partitions.append(
                PartitionLag(g, t, p, raw.committed, raw.end, lag, seconds, status, reason)
            )
        return Report(
            partitions,
            self._groups_of(partitions),
            self._under_replicated(),
            dict(self.group_errors),
        )

    def _settle(self, key: tuple[str, str, int], committed: int, end: int) -> None:
        self._settled[key] = (committed, end)
        win = self.windows[key]
        for i, s in enumerate(win):
            if (s.committed, s.end) == (committed, end):
                win[i] = s._replace(end=committed)

    def _groups_of(self, partitions: list[PartitionLag]) -> list[GroupLag]:
        out = []
        for g in sorted(self.members):
            mine = [p for p in partitions if p.group == g]
            status = ERR if g in self.group_errors else worst(p.status for p in mine)
            if g in self.group_errors:
                reason = self.group_errors[g]
            else:
                reason = next(
                    (p.reason for p in mine if p.status == status), "no committed offset yet"
                )
            out.append(GroupLag(g, status, sum(p.lag or 0 for p in mine), self.members[g], reason))
        return out

    def _under_replicated(self) -> dict[str, int]:
        try:
            topics = self.admin.list_topics(timeout=self.timeout_s).topics
        except KafkaException as e:
            raise LagError(f"cannot read topic metadata: {e.args[0].str()}") from None
        return {
            name: sum(len(p.isrs) < len(p.replicas) for p in meta.partitions.values())
            for name, meta in sorted(topics.items())
        }

    def _first_timestamps(
        self, wanted: list[tuple[str, int, int]]
    ) -> dict[tuple[str, int, int], int | None]:
        """(topic, partition, offset) -> timestamp in ms of the first committed record at or after
        the offset, or NOTHING when the end comes first. What the time allows; the rest missing."""
        out: dict[tuple[str, int, int], int | None] = {
            k: self._timestamps[k] for k in wanted if k in self._timestamps
        }
        pending = sorted(set(wanted) - set(out))
        deadline = time.monotonic() + READ_BUDGET_S
        while pending and time.monotonic() < deadline:
            # a consumer holds one position per partition: one round per distinct offset
            batch, rest = {}, []
            for t, p, o in pending:
                if (t, p) in batch:
                    rest.append((t, p, o))
                else:
                    batch[(t, p)] = o
            out.update(self._read_first(batch, deadline))
            pending = rest
        # keep only what may be asked again: the message at an offset never changes
        self._timestamps = {k: v for k, v in out.items() if v is not None and v != NOTHING}
        return out

    def _read_first(
        self, starts: dict[tuple[str, int], int], deadline: float
    ) -> dict[tuple[str, int, int], int | None]:
        out: dict[tuple[str, int, int], int | None] = {}
        self._reader.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])
        todo = dict(starts)
        try:
            while todo and time.monotonic() < deadline:
                for msg in self._reader.consume(500, timeout=0.05):
                    tp = (msg.topic(), msg.partition())
                    if tp not in todo:
                        continue
                    err = msg.error()
                    if err is not None and err.code() == KafkaError._PARTITION_EOF:
                        out[(*tp, todo.pop(tp))] = NOTHING
                    elif err is None and coordinates(msg)[2] >= todo[tp]:
                        _, ts = msg.timestamp()
                        out[(*tp, todo.pop(tp))] = ts if ts >= 0 else None  # no timestamp
        finally:
            self._reader.unassign()
        return out


def group_reader(client_config: dict[str, Any], group: str) -> Consumer:
    """A consumer that asks `group`'s committed offsets and never joins the group nor commits.
    AdminClient.list_consumer_group_offsets would do, but librdkafka crashes the whole process
    (SIGSEGV, NULL group handle) when the group's coordinator moves during the request
    (confluentinc/librdkafka#5040): it did, repeatedly, under broker kills."""
    return Consumer(
        {**client_config, "group.id": group, "log_level": 3, "enable.auto.commit": False}
    )


def committed(
    reader: Consumer, partitions: dict[str, int], timeout_s: float
) -> list[TopicPartition]:
    """What the group of `reader` (group_reader) committed on `partitions` (topic -> partition
    count): offset and metadata of each partition it committed. Raises KafkaException when the
    cluster cannot say."""
    tps = [TopicPartition(t, p) for t, n in sorted(partitions.items()) for p in range(n)]
    if not tps:
        return []
    return [
        tp for tp in reader.committed(tps, timeout=timeout_s) if tp.error is None and tp.offset >= 0
    ]


def partitions_of(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    """Every topic of the cluster but Kafka's own (`__consumer_offsets`, ...), with its partition
    count."""
    topics = admin.list_topics(timeout=timeout_s).topics
    return {
        name: len(meta.partitions) for name, meta in topics.items() if not name.startswith("__")
    }


def backlog(
    admin: AdminClient, reader: Consumer, topic: str, partitions: int, timeout_s: float = 5.0
) -> dict[int, int]:
    """Records of `topic` that the group of `reader` (group_reader) has not committed past, per
    partition: its lag as `kafka-consumer-groups` counts it, from the log start where the group
    has committed nothing. Raises KafkaException when the cluster cannot say."""
    done = {tp.partition: tp.offset for tp in committed(reader, {topic: partitions}, timeout_s)}
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    # OffsetSpec's class methods are unannotated in confluent-kafka
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
    ends = _list(admin, tps, latest, timeout_s)
    fresh = [tp for tp in tps if tp.partition not in done]
    starts = _list(admin, fresh, earliest, timeout_s) if fresh else {}
    return {p: max(0, ends[p] - (done[p] if p in done else starts[p])) for p in ends}


def log_ends(client_config: dict[str, Any], topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """Each partition's log-end offset: how many records it has ever been written, whatever
    retention has deleted since; {} when the topic does not exist. A partition that cannot
    answer (its leader down, say) raises KafkaException: unknown is not empty."""
    admin = AdminClient({"log_level": 3, **client_config})
    meta = admin.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or (
        meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    ):
        return {}
    if meta.error is not None:
        raise KafkaException(meta.error)
    tps = [TopicPartition(topic, p) for p in meta.partitions]
    # OffsetSpec's class methods are unannotated in confluent-kafka
    return _list(admin, tps, OffsetSpec.latest(), timeout_s)  # type: ignore[no-untyped-call]


def _list(
    admin: AdminClient, tps: list[TopicPartition], spec: OffsetSpec, timeout_s: float
) -> dict[int, int]:
    futures = admin.list_offsets({tp: spec for tp in tps}, request_timeout=timeout_s)
    return {tp.partition: f.result().offset for tp, f in futures.items()}
