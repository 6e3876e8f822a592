"""Every topic orderbus uses, declared once. Nothing else spells a topic name."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.events import PARTICIPANTS

# Every topic has the deployment's partition count (Names.partitions, ORDERBUS_PARTITIONS), so an
# order lands on partition p everywhere. A partition is the unit of parallelism: a group spreads
# over at most that many instances. It is also a unit of the brokers' work: every partition a batch
# writes to is an append of its own, replicated and fetched on its own, so on one small host
# fewer is faster (README, Performance). This is the count of a new deployment.
PARTITIONS = 1
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    key: str  # what the message key is
    events: tuple[str, ...]  # event types (schemas/) carried, by their `type` header
    replication: int = 3  # capped at the broker count on a single-node cluster
    cleanup: str = "delete"
    retention_ms: int = 7 * DAY_MS
    extra: dict[str, str] = field(default_factory=dict)
    # every record is signed by the one service entitled to write its event, and counts only on
    # its key's partition (workers/runtime/signing.py): several principals may write the topic
    signed: bool = False

    def configs(self, min_isr: int) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup,
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(min_isr),
            **self.extra,
        }


ORDERS_PLACED = Topic("orders.placed.v1", key="order_id", events=("OrderPlaced",))
# the source of truth of every distributed transaction: kept for good, so an audit can re-fold it
TX_LOG = Topic(
    "tx.log.v1",
    key="order_id",
    retention_ms=-1,
    events=("TxBegun", "Voted", "DeadlinePassed", "Decided", "Acked"),
    signed=True,
)
# what the participants are told, one record for all of them: every participant reads every
# Prepare and every decision (none names a participant), so a hop writes one record, not one per
# participant, and one append
COMMANDS = Topic(
    "orders.commands.v1", key="order_id", events=("Prepare", "Commit", "Abort"), signed=True
)
ORDERS_STATUS = Topic(
    "orders.status.v1", key="order_id", retention_ms=-1, events=("StatusChanged",), signed=True
)
ORDERS_DLQ = Topic(
    "orders.dlq.v1",
    key="original key (its sha256 if too long)",
    retention_ms=30 * DAY_MS,
    events=(),
)
ALL = (ORDERS_PLACED, TX_LOG, COMMANDS, ORDERS_STATUS, ORDERS_DLQ)

# The headers a worker appends to a dead letter, after any the original carried (so the last of a
# name is the worker's). Every name starts with DLQ_PREFIX.
DLQ_PREFIX = "dlq."
DLQ_REASON = "dlq.reason"
DLQ_DETAIL = "dlq.detail"
DLQ_TOPIC = "dlq.topic"  # where the original was: topic, partition, offset
DLQ_PARTITION = "dlq.partition"
DLQ_OFFSET = "dlq.offset"
DLQ_WORKER = "dlq.worker"
DLQ_AT_MS = "dlq.at_ms"
# What did not fit in the dead letter whole, each with the original's size in bytes: the value
# is its first bytes; the key is the original's sha256, in hex; the headers were dropped and
# DLQ_HEADERS_SHA256 is their sha256, in hex (of workers/runtime/messages.py's encoding)
DLQ_TRUNCATED_FROM = "dlq.truncated_from"
DLQ_KEY_DIGESTED_FROM = "dlq.key_digested_from"
DLQ_HEADERS_DIGESTED_FROM = "dlq.headers_digested_from"
DLQ_HEADERS_SHA256 = "dlq.headers_sha256"

# what a re-driven record carries besides the original: how often it went round (topics/redrive.py);
# outside what a signature covers, so a signed record re-driven stays its author's
REPLAY_COUNT = "replay.count"


def by_name(name: str) -> Topic:
    for topic in ALL:
        if topic.name == name:
            return topic
    raise KeyError(f"no topic {name!r} in the catalogue")


# consumer groups, one per worker kind
GROUP_PREFIX = "orderbus."
GROUPS = {
    w: GROUP_PREFIX + w
    for w in ("intake", "coordinator", "inventory", "payment", "shipping", "status", "tracker")
}

# The order tracker's tables' changelogs, named as faust names them (<app id>-<table>-changelog),
# made by topics.admin.ensure before faust starts (workers/tracker/app.py says why)
TRACKER_WINDOWS_KEPT = 15  # minutes of one-minute windows the tracker keeps (and shows)
TRACKER_STAGES = Topic(
    f"{GROUPS['tracker']}-order_to_stages-changelog", "order_id", (), cleanup="compact"
)
# faust's own choice for a windowed changelog: compacted, and old windows deleted
TRACKER_COUNTS = Topic(
    f"{GROUPS['tracker']}-minute_to_counts-changelog",
    "window",
    (),
    cleanup="compact,delete",
    retention_ms=(TRACKER_WINDOWS_KEPT + 5) * 60_000,
)
TRACKER_CHANGELOGS = {"order_to_stages": TRACKER_STAGES, "minute_to_counts": TRACKER_COUNTS}


@dataclass(frozen=True)
class Names:
    """Topic and group names as deployed: the catalogue's names behind an optional prefix, so
    several pipelines (a test's own, say) can share one cluster without seeing each other."""

    prefix: str = ""
    partitions: int = PARTITIONS  # of every topic

    def topic(self, topic: Topic) -> str:
        return self.prefix + topic.name

    def group(self, worker: str) -> str:
        return self.prefix + GROUPS[worker]

    def destinations(self) -> dict[str, str]:
        """Where a worker's outputs go, by destination: the log, the statuses and each participant
        (one commands topic for all: an event meant for both is one record; messages.routed)."""
        return {
            "tx.log": self.topic(TX_LOG),
            "status": self.topic(ORDERS_STATUS),
            **dict.fromkeys(PARTICIPANTS, self.topic(COMMANDS)),
        }

    def signed(self) -> tuple[str, ...]:
        """The deployed names of the signed topics."""
        return tuple(self.topic(t) for t in ALL if t.signed)

    @property
    def group_prefix(self) -> str:
        """What every consumer group of this pipeline starts with, and every topic named after
        one (the tracker's changelogs)."""
        return self.prefix + GROUP_PREFIX

    def monitor_group(self) -> str:
        """The lag monitor's group id: librdkafka's consumer wants one, though the monitor never
        joins it nor commits in it."""
        return self.group_prefix + "lag"


@dataclass(frozen=True)
class Access:
    """What one Kafka principal may do; the ACLs `up` applies derive from this and nothing else."""

    reads: tuple[Topic, ...] = ()
    writes: tuple[Topic, ...] = ()
    group: str | None = None  # the GROUPS entry it consumes in (read, commit offsets)
    own_topics: bool = False  # creates and uses topics named after its group (faust's)
    monitors: bool = False  # describes the pipeline's groups, reads its topics (lag)
    watches: tuple[str, ...] = ()  # GROUPS entries whose committed offsets it reads


WORKER_OUTPUTS = (TX_LOG, COMMANDS, ORDERS_STATUS, ORDERS_DLQ)
# one principal per service; `admin` (operators' tools, `up`) is a super user and not listed
ACCESS = {
    "producer": Access(writes=(ORDERS_PLACED,)),
    # intake holds new orders while those downstream of it are far behind (back-pressure)
    "intake": Access(
        reads=(ORDERS_PLACED,),
        writes=(TX_LOG, COMMANDS, ORDERS_DLQ),  # an order's PENDING status is a row it writes
        group="intake",
        watches=("inventory", "payment", "coordinator"),
    ),
    "coordinator": Access(reads=(TX_LOG,), writes=WORKER_OUTPUTS, group="coordinator"),
    "inventory": Access(reads=(COMMANDS,), writes=(TX_LOG, ORDERS_DLQ), group="inventory"),
    "payment": Access(reads=(COMMANDS,), writes=(TX_LOG, ORDERS_DLQ), group="payment"),
    "shipping": Access(
        reads=(ORDERS_STATUS,), writes=(ORDERS_STATUS, ORDERS_DLQ), group="shipping"
    ),
    "status": Access(reads=(ORDERS_STATUS,), writes=(ORDERS_DLQ,), group="status"),
    "tracker": Access(
        reads=(ORDERS_PLACED, TX_LOG, ORDERS_STATUS), group="tracker", own_topics=True
    ),
    "lag": Access(monitors=True),
}
