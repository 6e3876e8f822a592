"""The consume–process–produce loop every worker stands on: effects exactly once, records at
least once.

One batch = one database transaction (inside the handler), whose effects are keyed by order id,
then the batch's outputs on the idempotent producer (acks=all). Its input offsets are committed
only once every output of it and of every earlier batch is acknowledged; meanwhile the next batch
is read and processed (one producer writes each partition in order, so order per partition is
kept). A crash re-reads from the committed offset, and the handlers' idempotent effects return
the recorded outcomes and emit them again: a record may come out twice, an effect never happens
twice. There is no Kafka transaction: one cost 70–140 ms per batch on every hop and set the
pipeline's latency.

What a handler is lives in handler.py, the clients' settings in clients.py. What is left, some
370 lines, is one loop whose acknowledgement, commit, rebalance, hold and liveness rules act on
the same per-partition state.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from topics.producer import DeliveryCallback
from topics.read import coordinates
from workers.runtime.clients import WATCH_EVERY_S, LoopConfig, consumer_config, producer_config
from workers.runtime.crash import CrashPoints
from workers.runtime.handler import Handler, Out
from workers.runtime.liveness import Liveness
from workers.runtime.metrics import Metrics
from workers.runtime.settings import Settings
from workers.runtime.signing import Signer

log = logging.getLogger(__name__)
# how often acknowledged offsets are committed: each commit is a replicated write to
# __consumer_offsets, and committing after every batch made those the brokers' busiest work;
# a crash reads again at most this much more
COMMIT_EVERY_S = 0.5


class Fatal(RuntimeError):
    """The process must stop: an output was not delivered, or a fatal client error. A restart
    is always safe: it reads again from the committed offsets."""


@dataclass
class Pending:
    """A batch whose outputs are in flight: its offsets are committed once all are acknowledged."""

    offsets: list[TopicPartition]
    outs: list[Out]
    consumed: dict[str, int] = field(default_factory=dict)  # topic -> messages, counted then
    waiting: int = 0
    error: KafkaError | None = None

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        self.waiting -= 1
        if err is not None and self.error is None:
            self.error = err


class Loop:
    def __init__(
        self,
        settings: Settings,
        cfg: LoopConfig,
        handler: Handler,
        metrics: Metrics,
        liveness: Liveness | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.cfg, self.handler, self.metrics = cfg, handler, metrics
        self.signer = signer
        self.liveness = liveness or Liveness()
        # where the consumer starts each owned partition, while position() cannot say (nothing
        # read since the assignment or a rewind): its committed offset, or OFFSET_BEGINNING
        self.starts: dict[tuple[str, int], int] = {}
        self.crash = CrashPoints(metrics.worker, settings.crash)
        self.stopping = False
        self.consumer = Consumer({**consumer_config(settings, cfg), "on_commit": self._on_commit})
        self.producer = Producer(producer_config(settings, cfg))
        self.pending: deque[Pending] = deque()
        # per partition: the offset whose batches' outputs are all acknowledged, and the offset
        # the group last confirmed committed; a commit that failed is tried again until they meet
        self.acked: dict[tuple[str, int], TopicPartition] = {}
        self.confirmed: dict[tuple[str, int], int] = {}
        self.commit_tried_at = 0.0
        self.held: frozenset[int] = frozenset()
        self.synced_at = time.monotonic()
        metrics.assigned.labels(metrics.worker).set_function(lambda: len(self.liveness.owned()))
        metrics.stalled.labels(metrics.worker).set_function(self.liveness.stalled_s)
        handler.on_progress = self.liveness.waiting  # a long re-fold on assignment is no stall
        handler.caught_up = self.caught_up

    def stop(self, *_: object) -> None:
        self.stopping = True

    # the partitions given and taken are incremental (cooperative and KIP-848 protocols), and
    # consumer.assignment() does not include the given ones until the callback returns
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels(self.metrics.worker, "assign").inc()
        starts = self.handler.assigned(partitions)
        try:
            self.starts.update(self._committed(partitions, timeout_s=10))
        except KafkaException as e:  # such a partition counts as behind until a record is read
            log.warning("committed offsets of the new partitions unknown: %s", e.args[0])
        if starts:
            for tp in partitions:
                tp.offset = starts.get((tp.topic, tp.partition), tp.offset)
            self.starts.update(starts)
            # everything before where the handler resumes is done: committed at the next round, so
            # the group's offset is true even if the partition never gets another record (a reset
            # or expired offset would otherwise read as a backlog for ever, and hold intake)
            for (topic, p), offset in starts.items():
                self.acked[(topic, p)] = TopicPartition(
                    topic, p, offset, metadata=self.handler.offset_metadata(topic, p)
                )
            consumer.incremental_assign(partitions)  # instead of the committed offsets
        self.liveness.assigned(_keys(partitions))

    def _on_revoke(
        self, consumer: Consumer, partitions: list[TopicPartition], kind: str = "revoke"
    ) -> None:
        self.metrics.rebalances.labels(self.metrics.worker, kind).inc()
        if kind == "revoke":
            # still ours for a moment: let what is in flight land and commit what is acknowledged,
            # so the new owner reads again as little as possible
            self.producer.flush(10)
            self._commit_ready(asynchronous=False)
        gone = set(_keys(partitions))
        for p in self.pending:  # never committed by this instance now: the new owner reads it
            p.offsets = [tp for tp in p.offsets if (tp.topic, tp.partition) not in gone]
        for key in gone:
            self.acked.pop(key, None)
            self.confirmed.pop(key, None)
        self.handler.revoked(partitions)
        self.liveness.revoked(_keys(partitions))
        for key in _keys(partitions):
            self.starts.pop(key, None)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._on_revoke(consumer, partitions, "lost")

    def _watchdog(self) -> None:
        while not self.stopping:
            time.sleep(WATCH_EVERY_S)
            stalled = self.liveness.stalled_s()
            if stalled > self.cfg.stall_s and not self.stopping:
                log.critical(
                    "no progress for %.0f s on a partition with records behind it; exiting to be "
                    "restarted",
                    stalled,
                )
                logging.shutdown()
                os._exit(75)

    def run(self) -> None:
        threading.Thread(target=self._watchdog, daemon=True).start()
        self.consumer.subscribe(
            list(self.handler.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self.stopping:
                self._once()
        finally:
            self.stopping = True  # the watchdog too
            try:
                self.producer.flush(10)
                self._commit_ready(asynchronous=False)
            except Fatal:
                pass  # already ending; what was not delivered is read again
            finally:
                self.consumer.close()  # leaves the group now rather than after its session

    def _once(self) -> None:
        # wait for the first message only; then take what is already there. (consume() with a
        # timeout would wait the whole timeout for a full batch, on every hop of an order.)
        self.producer.poll(0)  # delivery reports of earlier batches
        committed = self._commit_ready()
        self._hold(self.handler.holding())
        first = self.consumer.poll(self.cfg.poll_timeout_s)
        messages = [first] if first is not None else []
        if first is not None and self.cfg.batch_max > 1:
            messages += self.consumer.consume(self.cfg.batch_max - 1, timeout=0)
        if messages:
            # a partition revoked inside consume() (after poll() returned one of its messages)
            # belongs to its new owner now: nothing of it is processed or committed here
            owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
            messages = [
                m for m in messages if m.error() is not None or (m.topic(), m.partition()) in owned
            ]
        t0 = time.monotonic()
        batch: list[Message] = []
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
        if batch or outs:
            self.crash.reach("after_db_commit")
            consumed: dict[str, int] = {}
            for msg in batch:
                topic, _, _ = coordinates(msg)
                consumed[topic] = consumed.get(topic, 0) + 1
            self._send(Pending(_next_offsets(batch, self.handler.offset_metadata), outs, consumed))
            self.crash.reach("after_produce")
            self.producer.poll(0)
        committed += self._commit_ready()
        if self._sync_due():
            committed += self._sync(now_ms)
        self._progressed(committed)
        if batch:
            self.metrics.batch_size.labels(self.metrics.worker).observe(len(batch))
            self.metrics.batch_ms.labels(self.metrics.worker).observe(
                (time.monotonic() - t0) * 1000
            )

    def _hold(self, held: frozenset[int]) -> None:
        """Pause the owned partitions the handler holds, resume them after. The rounds go on
        meanwhile, so deliveries, commits and rebalances do, and the other partitions are read;
        the held ones stay owned, and their wait is on purpose, no stall for the watchdog."""
        if not held and not self.held:
            return  # the usual round: nothing held, nothing to let go (no call into the client)
        owned = self.consumer.assignment()  # again each round: a partition given meanwhile
        pause = [tp for tp in owned if tp.partition in held]
        if pause:
            self.consumer.pause(pause)
        let_go = [tp for tp in owned if tp.partition in self.held and tp.partition not in held]
        if let_go:
            self.consumer.resume(let_go)
        if held:
            self.liveness.waiting()
        self.held = held

    def _send(self, pending: Pending) -> None:
        pending.waiting = len(pending.outs)
        self.pending.append(pending)
        for out in pending.outs:
            try:
                self._produce(out, pending.delivered)
            except KafkaException as e:  # refused before it left: it never can be delivered
                raise Fatal(f"an output to {out.topic} could not be produced: {e.args[0]}") from e

    def _commit_ready(self, asynchronous: bool = True) -> list[TopicPartition]:
        """Commit the offsets of the batches, oldest first, whose outputs are all acknowledged,
        every COMMIT_EVERY_S; returns those newly acknowledged. A commit that fails (a rebalance
        under way, the group coordinator moving) is tried again until the group confirms it,
        so a worker that goes idle still ends with nothing left to read. An output that could
        not be delivered (its retries and delivery timeout spent) ends the process, which then
        reads again from the last committed offsets."""
        newly: list[TopicPartition] = []
        while self.pending and self.pending[0].waiting == 0:
            if self.pending[0].error is not None:  # stays at the head: nothing after it commits
                raise Fatal(f"an output was not delivered: {self.pending[0].error}")
            batch = self.pending.popleft()
            newly += batch.offsets
            for tp in batch.offsets:
                self.acked[(tp.topic, tp.partition)] = tp
            for topic, n in batch.consumed.items():
                self.metrics.consumed.labels(self.metrics.worker, topic).inc(n)
            for out in batch.outs:
                self.metrics.produced.labels(self.metrics.worker, out.topic).inc()
                if out.count is not None:
                    out.count()
        due = [tp for key, tp in self.acked.items() if self.confirmed.get(key, -1) < tp.offset]
        if due and (not asynchronous or time.monotonic() - self.commit_tried_at >= COMMIT_EVERY_S):
            self.commit_tried_at = time.monotonic()
            try:
                # the stubs overload commit() on a literal True or False only, not on a bool
                done = self.consumer.commit(
                    offsets=due,  # type: ignore[call-overload]
                    asynchronous=asynchronous,
                )
            except KafkaException as e:
                log.warning("offset commit failed, to be tried again: %s", e.args[0])
            else:
                if not asynchronous:
                    self._on_commit(None, done)
        return newly

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition] | None) -> None:
        for tp in partitions or []:
            key = (tp.topic, tp.partition)
            if err is None and tp.error is None and key in self.acked:
                self.confirmed[key] = max(self.confirmed.get(key, -1), tp.offset)

    def _sync_due(self) -> bool:
        every = self.handler.sync_every_s
        return every is not None and time.monotonic() - self.synced_at >= every

    def _sync(self, now_ms: int) -> list[TopicPartition]:
        """Let every output so far be acknowledged and commit every offset, then tell the
        handler: its state now matches the committed offsets."""
        self.synced_at = time.monotonic()
        self.producer.flush(10)
        committed = self._commit_ready(asynchronous=False)
        if not self.pending:
            self.handler.checkpoint(now_ms)
        return committed

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
        return [
            (tp.topic, tp.partition)
            for tp in (self.consumer.position(owned) if owned else [])
            if self._at_end(tp)
        ]

    def caught_up(self, topic: str, partition: int) -> bool:
        """Whether this instance has read `partition` up to the end it last fetched: a timer
        that judges silence in the log must not judge from a part it has not read yet."""
        try:
            return self._at_end(self.consumer.position([TopicPartition(topic, partition)])[0])
        except KafkaException:
            return False

    def _at_end(self, tp: TopicPartition) -> bool:
        low, high = self.consumer.get_watermark_offsets(tp, cached=True)
        at = (
            tp.offset
            if tp.offset >= 0
            else self.starts.get((tp.topic, tp.partition), OFFSET_INVALID)
        )
        if at == OFFSET_BEGINNING:
            at = low
        return 0 <= high <= at

    def _produce(self, out: Out, on_delivery: DeliveryCallback) -> None:
        headers = out.headers
        if self.signer is not None:
            headers = self.signer.headers(out.topic, out.key, out.value, headers)
        while True:
            try:
                if out.partition is None:
                    self.producer.produce(
                        out.topic,
                        key=out.key,
                        value=out.value,
                        headers=headers,
                        on_delivery=on_delivery,
                    )
                else:
                    self.producer.produce(
                        out.topic,
                        key=out.key,
                        value=out.value,
                        headers=headers,
                        partition=out.partition,
                        on_delivery=on_delivery,
                    )
                return
            except BufferError:  # the local queue is full: let deliveries drain
                self.producer.poll(0.05)

    def _committed(
        self, partitions: list[TopicPartition], timeout_s: float
    ) -> dict[tuple[str, int], int]:
        """Where the consumer (re)starts each partition: the group's committed offset, or
        OFFSET_BEGINNING when there is none (auto.offset.reset=earliest)."""
        return {
            (tp.topic, tp.partition): tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            for tp in self.consumer.committed(partitions, timeout=timeout_s)
        }


def _keys(partitions: list[TopicPartition]) -> list[tuple[str, int]]:
    return [(tp.topic, tp.partition) for tp in partitions]


def _next_offsets(
    batch: list[Message], metadata: Callable[[str, int], str]
) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for msg in batch:
        topic, partition, offset = coordinates(msg)
        last[(topic, partition)] = offset
    return [TopicPartition(t, p, o + 1, metadata=metadata(t, p)) for (t, p), o in last.items()]
