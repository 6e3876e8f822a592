"""What `orderbus verify` checks against: everything read once, committed data only.

orderbus opens no Kafka transaction, and the ACLs grant none of its principals a transactional
id; yet a foreign transactional producer (an admin's tool, a cluster made `--insecure`, an older
release's records) can leave one open on a pipeline topic, and every read_committed reader, the
workers included, then stops at it. So verify still looks for open Kafka transactions and for
dead letters written but not committed: they say why a pipeline is stuck, which nothing else
would."""

from __future__ import annotations

from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from orderbus.ops.report import connect, read_from
from schemas.errors import DeadLetter
from schemas.events import OrderPlaced
from topics import lag as group_lag
from topics.catalogue import (
    ACCESS,
    ALL,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_TOPIC,
    ORDERS_DLQ,
    ORDERS_PLACED,
    TX_LOG,
)
from topics.read import (
    IncompleteRead,
    ReadError,
    coordinates,
    open_transactions,
    read,
    read_events,
    text_headers,
)
from workers.coordinator.audit import placed_event
from workers.coordinator.fold import Tx, fold
from workers.main import PIPELINE
from workers.participant import store as participant_store
from workers.participant.store import LEDGERS
from workers.runtime.db import TRANSIENT as DB_TRANSIENT
from workers.runtime.settings import Settings
from workers.runtime.signing import Verifier
from workers.shipping import store as shipping_store
from workers.status import store as status_store


@dataclass
class Facts:
    # orders.placed: order id -> [(partition, offset, content hash)]; undecodable ones apart
    placed: dict[str, list[tuple[int, int, str]]] = field(default_factory=lambda: defaultdict(list))
    orders: dict[str, OrderPlaced] = field(default_factory=dict)  # id -> first valid OrderPlaced
    # (partition, offset, reason)
    invalid_placed: list[tuple[int, int, str]] = field(default_factory=list)
    # (source topic, partition, offset)
    dead: set[tuple[str, int, int]] = field(default_factory=set)
    # the same for every dead letter written, whether its transaction committed or not: tells a
    # dead letter that was aborted (or is still open) from one never written
    dead_written: set[tuple[str, int, int]] = field(default_factory=set)
    txs: dict[str, Tx] = field(default_factory=dict)  # order id -> Tx (the fold of tx.log)
    status: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # order id -> (status, reason)
    # participant -> order id -> (state, amounts)
    holds: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    # participant -> key -> (initial, avail, held, final)
    ledgers: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    shipments: set[str] = field(default_factory=set)
    # (group, topic, partition) -> records behind
    lag: dict[tuple[str, str, int], int] = field(default_factory=dict)
    lag_total: int = 0
    # (topic, partition) -> (last stable offset, log end) of a transaction open once the facts
    # were read (None: offsets unknown); `partial`: one was open before, so a committed-only
    # read may have stopped short of records that were committed meanwhile
    open_txns: dict[tuple[str, int], tuple[int, int] | None] = field(default_factory=dict)
    partial: bool = False
    quiet: bool = False  # no lag, nothing held, nothing undecided: the once-quiet checks apply


# Kafka's answers that no second try changes
REFUSALS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
    KafkaError._INVALID_ARG,
}


def transient(e: BaseException) -> bool:
    """Whether `gather` failed the way a broker or the database down for a moment makes it fail,
    so that reading again may succeed (PostgreSQL's refusals at connect time carry no code, so
    a wrong password is read again too; the reason is shown when the reads give up)."""
    if isinstance(e, (IncompleteRead, *DB_TRANSIENT)):
        return True
    if isinstance(e, ReadError):
        err = e.error
    elif isinstance(e, KafkaException):
        err = e.args[0]
    else:
        return False
    return isinstance(err, KafkaError) and not err.fatal() and err.code() not in REFUSALS


def gather(settings: Settings) -> Facts:
    names, kafka, f = settings.names, settings.kafka(), Facts()
    pipeline_partitions = [(names.topic(t), p) for t in ALL for p in range(names.partitions)]
    f.partial = bool(open_transactions(kafka, pipeline_partitions))
    # first: a group's offset is committed after its database transaction, so a lag of zero read
    # now vouches for every database read after it; read last, it would vouch for older reads
    f.lag = lag(settings)
    placed_topic = names.topic(ORDERS_PLACED)
    for msg in read(kafka, placed_topic):
        _, partition, offset = coordinates(msg)
        try:
            order = placed_event(msg)
        except DeadLetter as e:
            f.invalid_placed.append((partition, offset, e.reason))
            continue
        if not isinstance(order, OrderPlaced):
            f.invalid_placed.append((partition, offset, "unknown_event"))
            continue
        f.placed[order.order_id].append((partition, offset, order.content_hash()))
        f.orders.setdefault(order.order_id, order)
    for committed, into in ((True, f.dead), (False, f.dead_written)):
        for msg in read(kafka, names.topic(ORDERS_DLQ), committed=committed):
            h = text_headers(msg)
            if DLQ_TOPIC in h:
                into.add((h[DLQ_TOPIC], int(h[DLQ_PARTITION]), int(h[DLQ_OFFSET])))
    verifier = Verifier.of(settings)
    for _, event in read_events(kafka, names.topic(TX_LOG), verifier.decode):
        f.txs[event.order_id] = fold(f.txs.get(event.order_id), event)
    f.status = read_from(settings, status_store.DATABASE, status_store.statuses)
    for participant, ledger in LEDGERS.items():
        with closing(connect(settings, ledger.database)) as conn, conn.cursor() as cur:
            f.holds[participant] = participant_store.holds(cur)
            f.ledgers[participant] = {
                r[0]: tuple(r[1:]) for r in participant_store.balances(cur, ledger)
            }
    f.shipments = read_from(settings, shipping_store.DATABASE, shipping_store.shipped)
    f.open_txns = open_transactions(kafka, pipeline_partitions)
    return f


def lag(settings: Settings) -> dict[tuple[str, str, int], int]:
    """Records each pipeline group has not consumed yet, on the topics its worker reads. Counted
    by reading from the committed offsets rather than by subtracting them from the log ends: a
    Kafka transaction's commit marker (a foreign producer's or an older release's; orderbus opens
    none) is an offset no consumer ever consumes, which arithmetic would count as lag for ever."""
    out: dict[tuple[str, str, int], int] = {}
    for worker in PIPELINE:
        group = settings.names.group(worker)
        topics = {settings.names.topic(t): settings.partitions for t in ACCESS[worker].reads}
        with closing(group_lag.group_reader(settings.kafka(), group)) as reader:
            done = {
                (tp.topic, tp.partition): tp.offset
                for tp in group_lag.committed(reader, topics, 30)
            }
        for topic, partitions in topics.items():
            starts = {p: done.get((topic, p), 0) for p in range(partitions)}
            behind = dict.fromkeys(starts, 0)
            for msg in read(settings.kafka(), topic, starts):
                behind[coordinates(msg)[1]] += 1
            out.update({(group, topic, p): n for p, n in behind.items()})
    return out
