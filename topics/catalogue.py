"""Every topic orderbus uses, declared once. Nothing else spells a topic name."""
from __future__ import annotations

from dataclasses import dataclass, field

PARTITIONS = 6    # every keyed topic has the same count, so one order lands on partition p everywhere;
                  # 6 spreads work over 6 instances; each more costs every transaction a marker
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    key: str                       # what the message key is
    events: tuple[str, ...]        # event types (schemas/) carried, by their `type` header
    partitions: int = PARTITIONS
    replication: int = 3           # capped at the broker count on a single-node cluster
    cleanup: str = "delete"
    retention_ms: int = 7 * DAY_MS
    extra: dict = field(default_factory=dict)

    def configs(self, min_isr: int) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup, "retention.ms": str(self.retention_ms),
                "min.insync.replicas": str(min_isr), **self.extra}


ORDERS_PLACED = Topic("orders.placed.v1", key="order_id", events=("OrderPlaced",))
# the source of truth of every distributed transaction: kept for good, so an audit can re-fold it
TX_LOG = Topic("tx.log.v1", key="order_id", retention_ms=-1,
               events=("TxBegun", "Voted", "DeadlinePassed", "Decided", "Acked"))
INVENTORY_COMMANDS = Topic("inventory.commands.v1", key="order_id",
                           events=("Prepare", "Commit", "Abort"))
PAYMENT_COMMANDS = Topic("payment.commands.v1", key="order_id", events=("Prepare", "Commit", "Abort"))
ORDERS_STATUS = Topic("orders.status.v1", key="order_id", retention_ms=-1, events=("StatusChanged",))
ORDERS_DLQ = Topic("orders.dlq.v1", key="original key", retention_ms=30 * DAY_MS, events=())
ALL = (ORDERS_PLACED, TX_LOG, INVENTORY_COMMANDS, PAYMENT_COMMANDS, ORDERS_STATUS, ORDERS_DLQ)

# participant name -> the topic of its commands
COMMANDS = {"inventory": INVENTORY_COMMANDS, "payment": PAYMENT_COMMANDS}


def by_name(name: str) -> Topic:
    for topic in ALL:
        if topic.name == name:
            return topic
    raise KeyError(f"no topic {name!r} in the catalogue")


# consumer groups, one per worker kind; the transactional ids of its instances derive from these
GROUPS = {
    "intake": "orderbus.intake",
    "coordinator": "orderbus.coordinator",
    "inventory": "orderbus.inventory",
    "payment": "orderbus.payment",
    "shipping": "orderbus.shipping",
    "status": "orderbus.status",
    "tracker": "orderbus.tracker",
}


@dataclass(frozen=True)
class Names:
    """Topic and group names as deployed: the catalogue's names behind an optional prefix, so
    several pipelines (a test's own, say) can share one cluster without seeing each other."""
    prefix: str = ""

    def topic(self, topic: Topic) -> str:
        return self.prefix + topic.name

    def group(self, worker: str) -> str:
        return self.prefix + GROUPS[worker]

    def commands(self, participant: str) -> str:
        return self.topic(COMMANDS[participant])
