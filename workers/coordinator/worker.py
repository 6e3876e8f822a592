"""The coordinator shell: folds tx.log, announces decisions, appends deadlines, re-sends decisions
until every participant has acknowledged.

Its open transactions are a cache of the fold. With every batch it commits, in the same Kafka
transaction as its outputs, the input offset and (as the offset's metadata) the offset of the
oldest TxBegun still open on that partition. A new owner re-folds tx.log from there to the
committed offset — typically a deadline's worth of events, read in well under a second — so no
state store is written on the hot path and none can disagree with the log.
"""
from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, TopicPartition

from schemas import codec
from schemas.errors import DeadLetter
from topics.catalogue import ORDERS_DLQ, ORDERS_STATUS, TX_LOG
from topics.read import read
from workers.coordinator.fold import due, in_doubt
from workers.coordinator.partition import Partition
from workers.runtime.crash import CrashPoints
from workers.runtime.messages import decode_batch, emit

log = logging.getLogger(__name__)
TICK_MS = 250
REFOLD_FROM = "refold_from="


class CoordinatorHandler:
    accepts = TX_LOG.events

    def __init__(self, settings, names, metrics, resend_after_ms: int = 3000):
        self.settings, self.metrics, self.resend_after_ms = settings, metrics, resend_after_ms
        self.tx_log = names.topic(TX_LOG)
        self.topics = (self.tx_log,)
        self.dest = {"tx.log": self.tx_log, "status": names.topic(ORDERS_STATUS),
                     "inventory": names.commands("inventory"), "payment": names.commands("payment")}
        self.dlq = names.topic(ORDERS_DLQ)
        self.group = names.group("coordinator")
        self.partitions: dict[int, Partition] = {}
        self.next_offset: dict[int, int] = {}
        self.crash = CrashPoints(metrics.worker)
        self.last_tick = 0

    # -- partitions come and go: re-fold each new one from where its oldest open order began
    def assigned(self, partitions):
        wanted = [tp.partition for tp in partitions if tp.topic == self.tx_log]
        if not wanted:
            return
        t0 = time.monotonic()
        rebuilt = refold(self.settings, self.group, self.tx_log, wanted)
        self.partitions.update(rebuilt)
        log.info("re-folded %d open transactions of partitions %s in %.2fs",
                 sum(len(p.open) for p in rebuilt.values()), wanted, time.monotonic() - t0)

    def revoked(self, partitions):
        for tp in partitions:
            if tp.topic == self.tx_log:
                self.partitions.pop(tp.partition, None)

    def offset_metadata(self, topic, partition):
        part = self.partitions.get(partition)
        nxt = self.next_offset.get(partition, 0)
        return f"{REFOLD_FROM}{part.refold_from(nxt) if part else nxt}"

    def process(self, messages, now_ms):
        events, outs = decode_batch(messages, self.metrics, now_ms, self.accepts, self.dlq)
        for msg in messages:
            self.next_offset[msg.partition()] = msg.offset() + 1
        any_decided = False
        for msg, event in events:
            part = self.partitions.setdefault(msg.partition(), Partition())
            decided = part.apply(msg.offset(), event, now_ms)
            if decided:
                any_decided = True
                tx = decided[0][1]
                count = self.metrics.decisions.labels(tx.outcome, tx.reason or "").inc
                # counted once, with the first of the decision's outputs
                outs += [emit(self.dest[d], e, count if n == 0 else None)
                         for n, (d, e) in enumerate(decided)]
        if any_decided:
            self.crash.reach("after_decision")
        return outs

    def tick(self, now_ms):
        if now_ms - self.last_tick < TICK_MS:
            return []
        self.last_tick = now_ms
        outs, doubtful = [], 0
        for part in self.partitions.values():
            for oid, (tx, timers) in part.open.items():
                doubtful += in_doubt(tx)
                new_timers, sent = due(tx, timers, now_ms, self.resend_after_ms)
                if new_timers is not timers:
                    part.open[oid] = (tx, new_timers)
                outs += [emit(self.dest[d], e) for d, e in sent]
        self.metrics.in_doubt.labels(self.metrics.worker).set(doubtful)
        return outs


def refold(settings, group: str, topic: str, partitions: list[int]) -> dict[int, Partition]:
    """Rebuild the open transactions of `partitions` from tx.log alone: from the committed
    refold point up to the committed offset."""
    consumer = Consumer(settings.kafka(**{"group.id": group, "enable.auto.commit": False,
                                          "log_level": 3}))
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    finally:
        consumer.close()
    starts, stops = {}, {}
    for tp in committed:
        meta = tp.metadata or ""
        start = int(meta[len(REFOLD_FROM):]) if meta.startswith(REFOLD_FROM) else 0
        if 0 <= start < tp.offset:      # nothing committed: the group starts at the beginning
            starts[tp.partition], stops[tp.partition] = start, tp.offset
    out = {p: Partition() for p in partitions}
    if starts:
        now_ms = int(time.time() * 1000)
        for msg in read(settings.kafka(), topic, starts, stops, timeout_s=60, group=group):
            try:
                event = codec.decode(msg.value(), msg.headers())
            except DeadLetter:
                continue   # dead-lettered when it was first read
            if event.TYPE in TX_LOG.events:
                out[msg.partition()].apply(msg.offset(), event, now_ms)
    return out
