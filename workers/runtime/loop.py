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
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from workers.runtime.crash import CrashPoints
from workers.runtime.metrics import Metrics

log = logging.getLogger(__name__)

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


class Handler(Protocol):
    topics: tuple[str, ...]

    def process(self, messages: list[Message], now_ms: int) -> list[Out]: ...
    def tick(self, now_ms: int) -> list[Out]: ...
    def assigned(self, partitions: list[TopicPartition]) -> None: ...
    def revoked(self, partitions: list[TopicPartition]) -> None: ...
    # committed with the offset, in the same transaction (the coordinator keeps where to
    # re-fold from there)
    def offset_metadata(self, topic: str, partition: int) -> str: ...


class Stateless:
    """A handler that keeps nothing between batches and has no timers."""

    def assigned(self, partitions) -> None:
        pass

    def revoked(self, partitions) -> None:
        pass

    def tick(self, now_ms: int) -> list[Out]:
        return []

    def offset_metadata(self, topic: str, partition: int) -> str:
        return ""


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
    # a batch that takes longer than this ends the process (to be restarted): librdkafka's
    # send_offsets_to_transaction can block past its timeout when the group coordinator broker
    # is gone (confluentinc/librdkafka#5456, #5511); a chaos run caught both status workers so.
    # A healthy batch takes ~0.1 s and one broker down holds it for seconds; at 90 s a long
    # chaos run stood still for 60 s with several workers hung after a broker kill
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
        "max.poll.interval.ms": 300_000,       # a batch may wait out a PostgreSQL restart
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
    def __init__(self, settings, cfg: LoopConfig, handler: Handler, metrics: Metrics):
        self.cfg, self.handler, self.metrics = cfg, handler, metrics
        self.crash = CrashPoints(metrics.worker)
        self.stopping = False
        self.consumer = Consumer(consumer_config(settings, cfg))
        self.producer = Producer(producer_config(settings, cfg))

    def stop(self, *_):
        self.stopping = True

    def _on_assign(self, consumer, partitions):
        self.metrics.rebalances.labels(self.metrics.worker, "assign").inc()
        self.handler.assigned(partitions)
        self.metrics.assigned.labels(self.metrics.worker).set(len(consumer.assignment()))

    def _on_revoke(self, consumer, partitions):
        self.metrics.rebalances.labels(self.metrics.worker, "revoke").inc()
        self.handler.revoked(partitions)

    def _watchdog(self) -> None:
        while not self.stopping:
            time.sleep(5)
            stalled = time.monotonic() - self.progress_at
            if stalled > self.cfg.stall_s and not self.stopping:
                log.critical("no batch finished for %.0f s; exiting to be restarted", stalled)
                logging.shutdown()
                os._exit(75)

    def run(self) -> None:
        self.progress_at = time.monotonic()
        threading.Thread(target=self._watchdog, daemon=True).start()
        self.producer.init_transactions(30)
        self.consumer.subscribe(list(self.handler.topics), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)
        try:
            while not self.stopping:
                self._once()
        finally:
            self.consumer.close()   # leaves the group now rather than after the session timeout
            self.producer.flush(10)

    def _once(self) -> None:
        # wait for the first message only; then take what is already there. (consume() with a
        # timeout would wait the whole timeout for a full batch, on every hop of an order.)
        self.progress_at = time.monotonic()
        first = self.consumer.poll(self.cfg.poll_timeout_s)
        messages = [first] if first is not None else []
        if first is not None and self.cfg.batch_max > 1:
            messages += self.consumer.consume(self.cfg.batch_max - 1, timeout=0)
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
            return
        self.crash.reach("after_db_commit")
        t1 = time.monotonic()
        self._transact(outs, _next_offsets(batch, self.handler.offset_metadata))
        log.debug("batch of %d in, %d out: process %.1f ms, transaction %.1f ms", len(batch),
                  len(outs), (t1 - t0) * 1000, (time.monotonic() - t1) * 1000)
        for msg in batch:
            self.metrics.consumed.labels(self.metrics.worker, msg.topic()).inc()
        if batch:
            self.metrics.batch_size.labels(self.metrics.worker).observe(len(batch))
            self.metrics.batch_ms.labels(self.metrics.worker).observe((time.monotonic() - t0) * 1000)

    def _transact(self, outs: list[Out], offsets: list[TopicPartition]) -> None:
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
            return
        for out in outs:
            self.metrics.produced.labels(self.metrics.worker, out.topic).inc()

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
        for tp in self.consumer.committed(assignment, timeout=30):
            if tp.offset < 0:
                tp.offset = -2   # OFFSET_BEGINNING: nothing committed yet
            self.consumer.seek(tp)
        self.handler.assigned(assignment)


def _next_offsets(batch: list[Message], metadata) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for msg in batch:
        last[(msg.topic(), msg.partition())] = msg.offset()
    return [TopicPartition(t, p, o + 1, metadata=metadata(t, p)) for (t, p), o in last.items()]
