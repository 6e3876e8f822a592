"""The coordinator shell: folds tx.log, announces decisions, appends deadlines, re-sends decisions
until every participant has acknowledged.

Its transactions are a cache of the fold, saved in its own database about once a second, when
every output so far is acknowledged and every offset committed: every open transaction, every
finished one (so that a decision stays final whatever is replayed later), and per partition the
offset the rows are folded up to. A new owner of a partition loads its open transactions and
re-folds only the events between that saved offset and the committed one, so taking over costs
what is open plus a second of the log, whatever the log's length.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing
from typing import Callable, Sequence

from confluent_kafka import KafkaException, Message, TopicPartition

from schemas.errors import DeadLetter
from schemas.events import Decided
from topics.catalogue import ORDERS_DLQ, TX_LOG, Names
from topics.lag import group_reader
from topics.read import ReadError, coordinates, read
from workers.coordinator import store
from workers.coordinator.fold import Output, TxLogEvent, due, in_doubt
from workers.coordinator.open_orders import OPENS, Partition
from workers.runtime.crash import CrashPoints
from workers.runtime.db import Database
from workers.runtime.handler import Out
from workers.runtime.messages import decode_batch, emit, routed
from workers.runtime.metrics import Metrics
from workers.runtime.settings import Settings
from workers.runtime.signing import Verifier

log = logging.getLogger(__name__)
TICK_MS = 250
STALL_MIN_MS = 5000
# committed as the offset's metadata: every event before the offset is folded and its outputs
# are committed with it. An offset without it (moved by an operator's reset) is not trusted so.
FOLDED = "folded"
# a take-over the cluster cannot answer (a broker down, its partitions' leaders moving) is tried
# again every TAKE_OVER_PAUSE_S for this long before the error ends the process (then the
# supervisor's restart tries again): a broker's failover takes 4-15 s here
TAKE_OVER_RETRY_S = 30.0
TAKE_OVER_PAUSE_S = 1.0


class CoordinatorHandler:
    accepts = TX_LOG.events
    # how often it saves (workers/runtime/handler.py Handler.sync_every_s)
    sync_every_s: float | None = 1.0

    def __init__(
        self,
        settings: Settings,
        db: Database,
        names: Names,
        metrics: Metrics,
        resend_after_ms: int = 3000,
        verifier: Verifier | None = None,
    ) -> None:
        self.settings, self.db, self.metrics = settings, db, metrics
        self.resend_after_ms = resend_after_ms
        # a vote whose TxBegun never comes is presumed aborted after as long as a deadline
        self.orphan_after_ms = settings.deadline_ms
        # a participant heard from within this long is alive, and an order waiting for its vote is
        # not aborted at its deadline unless it has gone past that order; at least a few seconds,
        # so one slow batch of a participant under load never reads as an outage
        self.stall_ms = max(settings.deadline_ms, STALL_MIN_MS)
        # the loop's: read to the end?
        self.caught_up: Callable[[str, int], bool] = lambda topic, partition: True
        self.tx_log = names.topic(TX_LOG)
        self.topics: tuple[str, ...] = (self.tx_log,)
        self.dest = names.destinations()
        self.dlq = names.topic(ORDERS_DLQ)
        # a vote counts only as its participant's own (workers/runtime/signing.py)
        self.verifier = verifier or Verifier.of(settings)
        self.group = names.group("coordinator")
        self.partitions: dict[int, Partition] = {}
        self.crash = CrashPoints(metrics.worker, settings.crash)
        self.last_tick = 0
        # the loop's watchdog, told during a long re-fold
        self.on_progress: Callable[[], None] = lambda: None

    # -- partitions come and go: load what is open, re-fold the rest from the log
    def assigned(self, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
        wanted = [tp.partition for tp in partitions if tp.topic == self.tx_log]
        if not wanted:
            return {}
        t0 = time.monotonic()
        taken, starts = self._take_over(wanted)
        self.partitions.update(taken)
        log.info(
            "took over partitions %s with %d open transactions in %.2fs",
            wanted,
            sum(len(p.open) for p in taken.values()),
            time.monotonic() - t0,
        )
        return {(self.tx_log, p): o for p, o in starts.items()}

    def _take_over(self, wanted: list[int]) -> tuple[dict[int, Partition], dict[int, int]]:
        """take_over, tried again while the cluster cannot answer, for up to TAKE_OVER_RETRY_S.
        Each try starts afresh from the store and the log, so a failed one leaves nothing."""
        deadline = time.monotonic() + TAKE_OVER_RETRY_S
        while True:
            try:
                return take_over(
                    self.settings, self.db, self.group, self.tx_log, wanted, self.on_progress
                )
            except (KafkaException, ReadError) as e:
                if time.monotonic() + TAKE_OVER_PAUSE_S > deadline:
                    raise
                log.warning("taking over partitions %s failed, trying again: %s", wanted, e)
            self.on_progress()  # a wait on the cluster, not a stall
            time.sleep(TAKE_OVER_PAUSE_S)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self.tx_log:
                self.partitions.pop(tp.partition, None)

    def offset_metadata(self, topic: str, partition: int) -> str:
        return FOLDED

    def process(self, messages: list[Message], now_ms: int) -> list[Out]:
        events, outs = decode_batch(
            messages, self.metrics, now_ms, self.accepts, self.dlq, check=self.verifier.check
        )
        items: list[tuple[int, int, TxLogEvent]] = []
        for m, e in events:
            assert isinstance(e, TxLogEvent)  # what `accepts` lets through
            _, partition, offset = coordinates(m)
            items.append((partition, offset, e))
        decided = fold_into(self.partitions, self.db, items, now_ms)
        for msg in messages:
            _, partition, offset = coordinates(msg)
            self.partitions[partition].next_offset = offset + 1
        made = False
        for outputs in decided:
            first = outputs[0][1]
            count: Callable[[], None] | None = None
            if isinstance(first, Decided):  # a decision (else a late participant told of one)
                made = True
                count = self.metrics.decisions.labels(first.outcome, first.reason or "").inc
            # counted once, with the first of the decision's outputs
            outs += [
                emit(t, e, count if n == 0 else None)
                for n, (t, e) in enumerate(routed(self.dest, outputs))
            ]
        if made:
            self.crash.reach("after_decision")
        return outs

    def checkpoint(self, now_ms: int) -> None:
        """Every output so far is acknowledged and every offset committed: save what changed."""
        rows = [r for p, part in self.partitions.items() for r in part.unsaved(p)]
        positions = {p: part.next_offset for p, part in self.partitions.items()}
        self.db.run(lambda cur: store.save(cur, rows, positions))
        for part in self.partitions.values():
            part.saved()

    def holding(self) -> frozenset[int]:
        return frozenset()

    def tick(self, now_ms: int) -> list[Out]:
        if now_ms - self.last_tick < TICK_MS:
            return []
        self.last_tick = now_ms
        outs: list[Out] = []
        doubtful = 0
        for p, part in self.partitions.items():
            doubtful += sum(in_doubt(tx) for tx, _ in part.open.values())
            if not self.caught_up(self.tx_log, p):
                continue  # its silences are not known yet: the votes may be just unread
            for oid, (tx, timers) in part.open.items():
                new_timers, sent = due(
                    tx,
                    timers,
                    now_ms,
                    self.resend_after_ms,
                    self.orphan_after_ms,
                    progress=part.progress,
                    stall_ms=self.stall_ms,
                )
                if new_timers is not timers:
                    part.open[oid] = (tx, new_timers)
                outs += [emit(t, e) for t, e in routed(self.dest, sent)]
        self.metrics.in_doubt.labels(self.metrics.worker).set(doubtful)
        return outs


def fold_into(
    partitions: dict[int, Partition],
    db: Database,
    items: Sequence[tuple[int, int, TxLogEvent]],
    now_ms: int,
) -> list[list[Output]]:
    """Fold (partition, offset, event) in order, after looking up in the store every order an
    event may open that the partition does not hold. Returns the outputs of each event that had
    any: a decision, or a decision's command to a participant that must hear it late."""
    unknown: dict[int, set[str]] = {}
    for p, _, event in items:
        if event.TYPE in OPENS:
            unknown.setdefault(p, set()).update(partitions[p].unknown([event.order_id]))
    wanted = sorted(set().union(*unknown.values())) if unknown else []
    if wanted:
        found = db.run(lambda cur: store.lookup(cur, wanted))
        for p, ids in unknown.items():
            for oid in ids:
                if (p, oid) in found:
                    tx, at = found[(p, oid)]
                    partitions[p].learn(tx, now_ms, at)
    decided: list[list[Output]] = []
    for p, offset, event in items:
        outputs = partitions[p].apply(offset, event, now_ms)
        if outputs:
            decided.append(outputs)
    return decided


def take_over(
    settings: Settings,
    db: Database,
    group: str,
    topic: str,
    parts: list[int],
    beat: Callable[[], None] = lambda: None,
) -> tuple[dict[int, Partition], dict[int, int]]:
    """The state of `parts` as a new owner resumes it, and the offset to read each one from when
    it is not the committed one. Loads the saved open transactions; between the saved offset and a
    committed offset the coordinator wrote itself, re-folds the log without emitting (those
    outputs were committed with that offset); elsewhere reading resumes at the saved offset."""
    now_ms = int(time.time() * 1000)
    saved = db.run(lambda cur: store.load_open(cur, parts))
    committed = _committed(settings, group, topic, parts)
    out: dict[int, Partition] = {}
    starts: dict[int, int] = {}
    ranges: dict[int, tuple[int, int]] = {}
    for p in parts:
        at, txs = saved.get(p, (0, []))
        out[p] = Partition(at)
        for tx, at_offset in txs:
            out[p].learn(tx, now_ms, at_offset)
        offset, meta = committed[p]
        if meta == FOLDED and offset > at:
            ranges[p] = (at, offset)
        else:
            starts[p] = at
    if ranges:
        refold(settings, db, group, topic, out, ranges, now_ms, beat)
    return out, starts


def refold(
    settings: Settings,
    db: Database,
    group: str,
    topic: str,
    partitions: dict[int, Partition],
    ranges: dict[int, tuple[int, int]],
    now_ms: int,
    beat: Callable[[], None],
    chunk: int = 2000,
) -> None:
    """Fold tx.log's [start, stop) of each partition into `partitions`, outputs discarded."""
    items: list[tuple[int, int, TxLogEvent]] = []

    def flush() -> None:
        fold_into(partitions, db, items, now_ms)
        items.clear()
        beat()

    starts = {p: a for p, (a, _) in ranges.items()}
    stops = {p: b for p, (_, b) in ranges.items()}
    verifier = Verifier.of(settings)
    refused = 0
    for msg in read(
        settings.kafka(), topic, starts, stops, timeout_s=3600, group=group, on_progress=beat
    ):
        _, partition, offset = coordinates(msg)
        try:
            items.append((partition, offset, verifier.decode(msg)))
        except DeadLetter:
            refused += 1  # dead-lettered when it was first read (keys are never retired)
        partitions[partition].next_offset = offset + 1
        if len(items) >= chunk:
            flush()
    flush()
    if refused:
        log.warning(
            "re-fold of %s skipped %d records refused when first read", sorted(ranges), refused
        )
    for p, (_, stop) in ranges.items():
        partitions[p].next_offset = stop


def _committed(
    settings: Settings, group: str, topic: str, parts: list[int]
) -> dict[int, tuple[int, str]]:
    with closing(group_reader(settings.kafka(), group)) as reader:
        committed = reader.committed([TopicPartition(topic, p) for p in parts], timeout=30)
    out: dict[int, tuple[int, str]] = {}
    for tp in committed:
        if tp.error is not None:  # never guess a position: the take-over is tried again
            raise KafkaException(tp.error)
        out[tp.partition] = (tp.offset, tp.metadata or "")
    return out
