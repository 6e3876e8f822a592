"""The transactional consume–process–produce loop every worker stands on.

One batch = one database transaction (inside the handler) + one Kafka transaction that carries the
batch's outputs and its input offsets. The database commits first; if the process dies before the
Kafka commit, the batch is redelivered and the handler's idempotent effects return the recorded
outcome, so the outputs come out once.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from confluent_kafka import (OFFSET_BEGINNING, OFFSET_INVALID, Consumer, KafkaError, KafkaException,
                             Message, Producer, TopicPartition)

from workers.runtime.crash import CrashPoints
from workers.runtime.db import RETRY_S
from workers.runtime.liveness import Liveness
from workers.runtime.metrics import Metrics

log = logging.getLogger(__name__)
WATCH_EVERY_S = 5.0      # how often the watchdog looks

# a dead member's partitions wait out its session: 3 s makes failover ~3.5 s (6 s made it ~9 s);
# the brokers' group.min.session.timeout.ms allows it (infra/kafka/cluster.py)
SESSION_TIMEOUT_MS = 3_000
HEARTBEAT_MS = 500


@dataclass(frozen=True)
class Out:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list | None = None
    partition: int | None = None     # None: by key (murmur2, as every orderbus producer)
    # what this output adds to a counter (a dead letter, a vote, a decision), called once the
    # transaction carrying it has committed: an aborted batch is read again and counted then
    count: Callable[[], None] | None = field(default=None, compare=False, repr=False)


class Handler(Protocol):
    topics: tuple[str, ...]

    def process(self, messages: list[Message], now_ms: int) -> list[Out]: ...
    def tick(self, now_ms: int) -> list[Out]: ...
    # returns (topic, partition) -> offset to read from, where it is not the committed offset
    def assigned(self, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]: ...
    def revoked(self, partitions: list[TopicPartition]) -> None: ...
    # committed with the offset, in the same transaction (the coordinator marks its own commits)
    def offset_metadata(self, topic: str, partition: int) -> str: ...
    # after the Kafka transaction of a batch has committed
    def committed(self, now_ms: int) -> None: ...


class Stateless:
    """A handler that keeps nothing between batches and has no timers."""

    on_progress = staticmethod(lambda: None)
    caught_up = staticmethod(lambda topic, partition: True)

    def assigned(self, partitions) -> dict:
        return {}

    def revoked(self, partitions) -> None:
        pass

    def tick(self, now_ms: int) -> list[Out]:
        return []

    def offset_metadata(self, topic: str, partition: int) -> str:
        return ""

    def committed(self, now_ms: int) -> None:
        pass


class Fatal(RuntimeError):
    """The process must stop: fenced by a newer instance, or a fatal client error."""


@dataclass(frozen=True)
class LoopConfig:
    group: str
    instance: str
    batch_max: int = 1000
    poll_timeout_s: float = 0.05
    transaction_timeout_ms: int = 10_000   # bounds how long a dead instance's open transaction
                                           # blocks read_committed readers of its partitions
    # an owned partition with records behind it that makes no progress for this long ends the
    # process, to be restarted (workers/runtime/liveness.py says what progress is, and why
    # waiting on the database is not a stall). librdkafka's send_offsets_to_transaction can
    # block past its timeout when the group coordinator broker is gone
    # (confluentinc/librdkafka#5456, #5511); a chaos run caught both status workers so.
    # A healthy batch takes ~0.1 s and one broker down holds it for seconds; at 90 s a long
    # chaos run stood still for 60 s with several workers hung after a broker kill. A dead
    # instance's open transaction holds read_committed readers for at most ~20 s (its 10 s
    # timeout, then the broker's 10 s abort sweep), below this
    stall_s: float = 30.0
    session_timeout_ms: int = SESSION_TIMEOUT_MS
    heartbeat_ms: int = HEARTBEAT_MS
    protocol: str = "classic"              # or "consumer" (KIP-848)
    # classic protocol with group.instance.id: a restarted instance takes its partitions back
    # without a rebalance, but at a 3 s session that gains nothing measurable, and after a group
    # coordinator broker dies librdkafka fences static members again and again
    # (confluentinc/librdkafka#3437; 15-minute chaos runs stalled on it), so it is opt-in
    static: bool = False


def consumer_config(settings, cfg: LoopConfig) -> dict:
    conf = settings.kafka(**{
        "group.id": cfg.group,
        "client.id": f"{cfg.group}-{cfg.instance}",
        "isolation.level": "read_committed",   # never act on an aborted transaction's output
        "enable.auto.commit": False,           # offsets are committed inside the transaction
        "auto.offset.reset": "earliest",       # a new group starts from the beginning: nothing skipped
        # between two polls a batch may wait out its database's retry budget, with a stall short
        # of the watchdog's limit before and after it; any longer, the watchdog or the database
        # error has ended the process. Past this interval the group would hand a live instance's
        # partitions to another mid-batch (its offset commit would then be refused, the
        # transaction aborted and the batch left to the new owner)
        "max.poll.interval.ms": int((RETRY_S + 2 * (cfg.stall_s + WATCH_EVERY_S)) * 1000),
        "fetch.wait.max.ms": 50,
    })
    if cfg.protocol == "consumer":
        conf["group.protocol"] = "consumer"   # timeouts and assignment are the broker's (KIP-848)
    else:
        conf.update({"partition.assignment.strategy": "cooperative-sticky",
                     "session.timeout.ms": cfg.session_timeout_ms,
                     "heartbeat.interval.ms": cfg.heartbeat_ms})
        if cfg.static:
            conf["group.instance.id"] = f"{cfg.group}-{cfg.instance}"
    return conf


def producer_config(settings, cfg: LoopConfig) -> dict:
    return settings.kafka(**{
        # stable per instance: a restarted instance fences its previous incarnation
        "transactional.id": f"{cfg.group}-{cfg.instance}",
        "transaction.timeout.ms": cfg.transaction_timeout_ms,
        # commit_transaction flushes at once, so a long linger costs no latency and lets one
        # batch per partition carry the whole transaction
        "linger.ms": 100,
        # right after a commit the broker answers the next transaction's first request with
        # CONCURRENT_TRANSACTIONS until its markers are written; the default 100 ms backoff
        # then costs every transaction ~100 ms (measured: 107 ms -> 31 ms per transaction)
        "retry.backoff.ms": 5,
        "compression.type": "lz4",
        # Java-compatible: one key lands on the same partition whichever client wrote it
        "partitioner": "murmur2_random",
    })


class Loop:
    def __init__(self, settings, cfg: LoopConfig, handler: Handler, metrics: Metrics,
                 liveness: Liveness | None = None):
        self.cfg, self.handler, self.metrics = cfg, handler, metrics
        self.liveness = liveness or Liveness()
        # where the consumer starts each owned partition, while position() cannot say (nothing
        # read since the assignment or a rewind): its committed offset, or OFFSET_BEGINNING
        self.starts: dict[tuple[str, int], int] = {}
        self.crash = CrashPoints(metrics.worker)
        self.stopping = False
        self.consumer = Consumer(consumer_config(settings, cfg))
        self.producer = Producer(producer_config(settings, cfg))
        metrics.assigned.labels(metrics.worker).set_function(lambda: len(self.liveness.owned()))
        metrics.stalled.labels(metrics.worker).set_function(self.liveness.stalled_s)
        metrics.tx_aborts.labels(metrics.worker)    # exported from 0: rate() sees the first abort
        handler.on_progress = self.liveness.waiting   # a long re-fold on assignment is no stall
        handler.caught_up = self.caught_up

    def stop(self, *_):
        self.stopping = True

    # the partitions given and taken are incremental (cooperative and KIP-848 protocols), and
    # consumer.assignment() does not include the given ones until the callback returns
    def _on_assign(self, consumer, partitions):
        self.metrics.rebalances.labels(self.metrics.worker, "assign").inc()
        starts = self.handler.assigned(partitions)
        try:
            self.starts.update(self._committed(partitions, timeout_s=10))
        except KafkaException as e:   # such a partition counts as behind until a record is read
            log.warning("committed offsets of the new partitions unknown: %s", e.args[0])
        if starts:
            for tp in partitions:
                tp.offset = starts.get((tp.topic, tp.partition), tp.offset)
            self.starts.update(starts)
            consumer.incremental_assign(partitions)   # instead of the committed offsets
        self.liveness.assigned(_keys(partitions))

    def _on_revoke(self, consumer, partitions, kind: str = "revoke"):
        self.metrics.rebalances.labels(self.metrics.worker, kind).inc()
        self.handler.revoked(partitions)
        self.liveness.revoked(_keys(partitions))
        for key in _keys(partitions):
            self.starts.pop(key, None)

    def _on_lost(self, consumer, partitions):
        self._on_revoke(consumer, partitions, "lost")

    def _watchdog(self) -> None:
        while not self.stopping:
            time.sleep(WATCH_EVERY_S)
            stalled = self.liveness.stalled_s()
            if stalled > self.cfg.stall_s and not self.stopping:
                log.critical("no progress for %.0f s on a partition with records behind it; "
                             "exiting to be restarted", stalled)
                logging.shutdown()
                os._exit(75)

    def run(self) -> None:
        threading.Thread(target=self._watchdog, daemon=True).start()
        self.producer.init_transactions(30)
        self.consumer.subscribe(list(self.handler.topics), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        try:
            while not self.stopping:
                self._once()
        finally:
            self.consumer.close()   # leaves the group now rather than after the session timeout
            self.producer.flush(10)

    def _once(self) -> None:
        # wait for the first message only; then take what is already there. (consume() with a
        # timeout would wait the whole timeout for a full batch, on every hop of an order.)
        first = self.consumer.poll(self.cfg.poll_timeout_s)
        messages = [first] if first is not None else []
        if first is not None and self.cfg.batch_max > 1:
            messages += self.consumer.consume(self.cfg.batch_max - 1, timeout=0)
        if messages:
            # a partition revoked inside consume() (after poll() returned one of its messages)
            # belongs to its new owner now: nothing of it is processed or committed here
            owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            messages = [m for m in messages if m.error() is not None
                        or (m.topic(), m.partition()) in owned]
        t0 = time.monotonic()
        batch = []
        for msg in messages:
            err = msg.error()
            if err is None:
                batch.append(msg)
            elif err.fatal() or err.code() == KafkaError._FATAL:
                # e.g. a static member fenced after its group coordinator moved: this consumer
                # will never deliver again, so the process must end and be restarted
                raise Fatal(f"consumer failed: {err}")
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", err)
        now_ms = int(time.time() * 1000)
        outs = self.handler.process(batch, now_ms) if batch else []
        outs += self.handler.tick(now_ms)
        if not batch and not outs:
            self._progressed([])
            return
        self.crash.reach("after_db_commit")
        t1 = time.monotonic()
        offsets = _next_offsets(batch, self.handler.offset_metadata)
        committed = self._transact(outs, offsets)
        self._progressed(offsets if committed else [])
        if not committed:
            return
        self.handler.committed(now_ms)
        log.debug("batch of %d in, %d out: process %.1f ms, transaction %.1f ms", len(batch),
                  len(outs), (t1 - t0) * 1000, (time.monotonic() - t1) * 1000)
        for msg in batch:
            self.metrics.consumed.labels(self.metrics.worker, msg.topic()).inc()
        if batch:
            self.metrics.batch_size.labels(self.metrics.worker).observe(len(batch))
            self.metrics.batch_ms.labels(self.metrics.worker).observe((time.monotonic() - t0) * 1000)

    def _transact(self, outs: list[Out], offsets: list[TopicPartition]) -> bool:
        """True once the batch's outputs and offsets have committed; False when the transaction
        was aborted and the batch is to be read again."""
        try:
            self.producer.begin_transaction()
            for out in outs:
                self._produce(out)
            self.crash.reach("after_produce")
            if offsets:
                self._retrying(lambda: self.producer.send_offsets_to_transaction(
                    offsets, self.consumer.consumer_group_metadata(), 30))
            self._retrying(lambda: self.producer.commit_transaction(30))
        except KafkaException as e:
            err = e.args[0]
            if err.fatal() or err.code() == KafkaError._FENCED:
                raise Fatal(f"Kafka transaction failed fatally: {err}") from e
            # whatever else went wrong, this transaction cannot be trusted: abort it and read the
            # batch again (the database effects are idempotent, the outputs come out once)
            log.warning("aborting the Kafka transaction (%s); rewinding to committed offsets", err)
            self.metrics.tx_aborts.labels(self.metrics.worker).inc()
            try:
                self.producer.abort_transaction(30)
                self._rewind()
            except KafkaException as again:
                # a restart is always safe: the new producer fences and aborts this one
                raise Fatal(f"could not abort and rewind after {err}: {again.args[0]}") from e
            return False
        for out in outs:
            self.metrics.produced.labels(self.metrics.worker, out.topic).inc()
            if out.count is not None:
                out.count()
        return True

    def _progressed(self, committed: list[TopicPartition]) -> None:
        """The end of a round, for the watchdog: the partitions whose batch committed and those
        with nothing behind them progressed."""
        self.liveness.progressed(_keys(committed) + self._caught_up())

    def _caught_up(self) -> list[tuple[str, int]]:
        """The owned partitions whose consumer position is at the log end as librdkafka last
        fetched it. That end is the high watermark (confluentinc/librdkafka, rdkafka_fetcher.c),
        while a read_committed position stops at the first open transaction, so a partition held
        behind one is not caught up. The position steps over commit markers, and is unknown until
        a record is read after an assignment or a seek: the consumer then starts where the group
        committed, or at the log start."""
        owned = [TopicPartition(t, p) for t, p in self.liveness.owned()]
        return [(tp.topic, tp.partition) for tp in (self.consumer.position(owned) if owned else [])
                if self._at_end(tp)]

    def caught_up(self, topic: str, partition: int) -> bool:
        """Whether this instance has read `partition` up to the end it last fetched: a timer
        that judges silence in the log must not judge from a part it has not read yet."""
        try:
            return self._at_end(self.consumer.position([TopicPartition(topic, partition)])[0])
        except KafkaException:
            return False

    def _at_end(self, tp: TopicPartition) -> bool:
        low, high = self.consumer.get_watermark_offsets(tp, cached=True)
        at = tp.offset if tp.offset >= 0 else self.starts.get((tp.topic, tp.partition),
                                                               OFFSET_INVALID)
        if at == OFFSET_BEGINNING:
            at = low
        return 0 <= high <= at

    def _produce(self, out: Out) -> None:
        while True:
            try:
                if out.partition is None:
                    self.producer.produce(out.topic, key=out.key, value=out.value,
                                          headers=out.headers)
                else:
                    self.producer.produce(out.topic, key=out.key, value=out.value,
                                          headers=out.headers, partition=out.partition)
                return
            except BufferError:   # the local queue is full: let deliveries drain
                self.producer.poll(0.05)

    @staticmethod
    def _retrying(call, attempts: int = 5) -> None:
        """A retriable error (a timeout, a coordinator moving, a concurrent transaction still
        completing) is retried with backoff; anything else propagates."""
        for attempt in range(attempts):
            try:
                return call()
            except KafkaException as e:
                if not e.args[0].retriable() or attempt == attempts - 1:
                    raise
                log.warning("%s; retrying", e.args[0])
                time.sleep(0.1 * 2 ** attempt)

    def _rewind(self) -> None:
        """After an abort, consume again from the last committed offsets; the handler drops
        whatever it derived from the aborted batch."""
        assignment = self.consumer.assignment()
        self.handler.revoked(assignment)
        starts = self._committed(assignment, timeout_s=30)
        starts.update(self.handler.assigned(assignment))
        for (topic, partition), offset in starts.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))
        self.starts.update(starts)

    def _committed(self, partitions: list[TopicPartition], timeout_s: float) -> dict:
        """Where the consumer (re)starts each partition: the group's committed offset, or
        OFFSET_BEGINNING when there is none (auto.offset.reset=earliest)."""
        return {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                for tp in self.consumer.committed(partitions, timeout=timeout_s)}


def _keys(partitions: list[TopicPartition]) -> list[tuple[str, int]]:
    return [(tp.topic, tp.partition) for tp in partitions]


def _next_offsets(batch: list[Message], metadata) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for msg in batch:
        last[(msg.topic(), msg.partition())] = msg.offset()
    return [TopicPartition(t, p, o + 1, metadata=metadata(t, p)) for (t, p), o in last.items()]
