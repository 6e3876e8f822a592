"""The coordinator shell: folds tx.log, announces decisions, appends deadlines, re-sends decisions
until every participant has acknowledged. Its open transactions live in a compacted changelog
written in the same Kafka transaction as its outputs and input offsets."""
from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, TopicPartition

from topics.catalogue import COORDINATOR_STATE, ORDERS_DLQ, ORDERS_STATUS, TX_LOG
from workers.coordinator import state
from workers.coordinator.fold import Timers, due, in_doubt, is_finished, step
from workers.runtime.crash import CrashPoints
from workers.runtime.loop import Out
from workers.runtime.messages import decode_batch, emit

log = logging.getLogger(__name__)
TICK_MS = 250


class CoordinatorHandler:
    accepts = TX_LOG.events

    def __init__(self, settings, names, metrics, resend_after_ms: int = 3000):
        self.settings, self.metrics, self.resend_after_ms = settings, metrics, resend_after_ms
        self.topics = (names.topic(TX_LOG),)
        self.changelog = names.topic(COORDINATOR_STATE)
        self.dest = {"tx.log": names.topic(TX_LOG), "status": names.topic(ORDERS_STATUS),
                     "inventory": names.commands("inventory"), "payment": names.commands("payment")}
        self.dlq = names.topic(ORDERS_DLQ)
        self.open: dict[int, dict[str, tuple]] = {}     # partition -> order id -> (Tx, Timers)
        self.crash = CrashPoints(metrics.worker)
        self.last_tick = 0

    # -- partitions come and go: restore the cache of the fold from the changelog
    def assigned(self, partitions):
        wanted = [tp.partition for tp in partitions if tp.topic == self.topics[0]]
        if not wanted:
            return
        t0 = time.monotonic()
        restored = restore(self.settings, self.changelog, wanted)
        for p in wanted:
            self.open[p] = restored.get(p, {})
        log.info("restored %d open transactions of partitions %s in %.2fs",
                 sum(len(restored.get(p, {})) for p in wanted), wanted, time.monotonic() - t0)

    def revoked(self, partitions):
        for tp in partitions:
            if tp.topic == self.topics[0]:
                self.open.pop(tp.partition, None)

    def process(self, messages, now_ms):
        events, outs = decode_batch(messages, self.metrics, now_ms, self.accepts, self.dlq)
        dirty: dict[str, int] = {}
        for msg, event in events:
            table = self.open.setdefault(msg.partition(), {})
            entry = table.get(event.order_id)
            if entry is None and event.TYPE != "TxBegun":
                continue   # a late event of an order already finished and forgotten
            tx, timers = entry or (None, Timers(first_seen_ms=now_ms))
            tx, decided = step(tx, event, now_ms)
            table[event.order_id] = (tx, timers)
            dirty[event.order_id] = msg.partition()
            if decided:
                self.crash.reach("after_decision")
                self.metrics.decisions.labels(tx.outcome, _reason_label(tx.reason)).inc()
                outs += [emit(self.dest[d], e) for d, e in decided]
        return outs + self._save(dirty)

    def tick(self, now_ms):
        if now_ms - self.last_tick < TICK_MS:
            return []
        self.last_tick = now_ms
        outs, dirty, doubtful = [], {}, 0
        for partition, table in self.open.items():
            for oid, (tx, timers) in table.items():
                doubtful += in_doubt(tx)
                new_timers, sent = due(tx, timers, now_ms, self.resend_after_ms)
                if new_timers != timers:
                    table[oid] = (tx, new_timers)
                    dirty[oid] = partition
                outs += [emit(self.dest[d], e) for d, e in sent]
        self.metrics.in_doubt.labels(self.metrics.worker).set(doubtful)
        return outs + self._save(dirty)

    def _save(self, dirty: dict[str, int]) -> list[Out]:
        outs = []
        for oid, partition in dirty.items():
            tx, timers = self.open[partition][oid]
            if is_finished(tx):
                del self.open[partition][oid]
                outs.append(Out(self.changelog, oid.encode(), None, None, partition))  # tombstone
            else:
                outs.append(Out(self.changelog, oid.encode(), state.dumps(tx, timers), None,
                                partition))
        return outs


def _reason_label(reason: str | None) -> str:
    return reason or ""   # bounded: "participant:code" or "deadline"


def restore(settings, topic: str, partitions: list[int], idle_s: float = 0.5) -> dict[int, dict]:
    """Read the changelog partitions (committed records only) up to their end."""
    consumer = Consumer(settings.kafka(**{"group.id": "unused", "enable.auto.commit": False,
                                          "isolation.level": "read_committed", "log_level": 3}))
    out: dict[int, dict] = {p: {} for p in partitions}
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in partitions}
        todo = {p for p in partitions if ends[p] > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        idle_since = time.monotonic()
        while todo:
            msgs = consumer.consume(1000, timeout=0.1)
            if not msgs and time.monotonic() - idle_since > idle_s:
                break   # the end is a transaction marker: no record will come
            for msg in msgs:
                if msg.error():
                    continue
                idle_since = time.monotonic()
                table = out[msg.partition()]
                if msg.value() is None:
                    table.pop(msg.key().decode(), None)
                else:
                    table[msg.key().decode()] = state.loads(msg.value())
                if msg.offset() + 1 >= ends[msg.partition()]:
                    todo.discard(msg.partition())
    finally:
        consumer.close()
    return out
