"""Every Prometheus metric a worker exports, declared once. Labels are bounded: worker, topic,
partition, outcome, reason — never an order id. A counter of messages, dead letters, votes or
decisions counts what was acknowledged, never an attempt that was not (Out.count
in loop.py)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

from schemas.errors import reasons as dead_letter_reasons
from topics.catalogue import ACCESS, ORDERS_DLQ

MS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
# the names they are scraped under: tools and tests read them from here
CONSUMED = "orderbus_messages_consumed_total"
PRODUCED = "orderbus_messages_produced_total"
BATCH_SIZE = "orderbus_batch_size"
BATCH_MS = "orderbus_batch_duration_ms"
DEAD_LETTERS = "orderbus_dead_letters_total"
REBALANCES = "orderbus_rebalances_total"
ASSIGNED = "orderbus_assigned_partitions"
STALLED = "orderbus_stalled_seconds"
DB_RETRIES = "orderbus_db_retries_total"
DECISIONS = "orderbus_decisions_total"
VOTES = "orderbus_votes_total"
IN_DOUBT = "orderbus_in_doubt_transactions"
INPUT_HELD = "orderbus_input_held"
BACKPRESSURE_UNKNOWN = "orderbus_backpressure_unknown"


class Metrics:
    def __init__(self, worker: str, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r, w = self.registry, worker
        self.worker = w
        # process_start_time_seconds: a worker that keeps being restarted (an output the brokers
        # refuse ends it, and restarting is always safe) shows as its changes
        ProcessCollector(registry=r)
        self.consumed = Counter(CONSUMED, "Messages consumed", ["worker", "topic"], registry=r)
        self.produced = Counter(PRODUCED, "Messages produced", ["worker", "topic"], registry=r)
        self.batch_size = Histogram(
            BATCH_SIZE,
            "Messages per batch",
            ["worker"],
            buckets=(1, 5, 10, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.batch_ms = Histogram(
            BATCH_MS,
            "Batch processing time, consume to outputs handed to the producer",
            ["worker"],
            buckets=MS_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            DEAD_LETTERS, "Messages sent to the dead-letter topic", ["worker", "reason"], registry=r
        )
        self.rebalances = Counter(
            REBALANCES, "Partition assignment changes", ["worker", "kind"], registry=r
        )
        self.assigned = Gauge(ASSIGNED, "Partitions this instance owns", ["worker"], registry=r)
        self.stalled = Gauge(
            STALLED,
            "Seconds since the owned partition that waited longest progressed (a batch of it "
            "committed, or nothing was behind it), not counting waits on the database; the "
            "watchdog ends the worker past its limit",
            ["worker"],
            registry=r,
        )
        self.db_retries = Counter(
            DB_RETRIES,
            "Database operations retried after a transient error",
            ["worker"],
            registry=r,
        )
        self.decisions = Counter(
            DECISIONS, "Coordinator decisions", ["outcome", "reason"], registry=r
        )
        self.votes = Counter(VOTES, "Participant votes", ["worker", "vote", "reason"], registry=r)
        self.held = Gauge(
            INPUT_HELD,
            "Partitions of its input the worker reads nothing new of, because a worker downstream "
            "of it is far behind on them (back-pressure)",
            ["worker"],
            registry=r,
        )
        self.backpressure_unknown = Gauge(
            BACKPRESSURE_UNKNOWN,
            "1 while the worker cannot read the backlog of a group downstream of it (past the "
            "seconds it keeps a last answer) and so holds nothing for that group",
            ["worker", "group"],
            registry=r,
        )
        self.in_doubt = Gauge(
            IN_DOUBT, "Transactions with a yes vote and no decision yet", ["worker"], registry=r
        )

    def start_at_zero(self) -> None:
        """Makes every dead-letter series this worker can produce exist, at 0, before its first
        message: a counter that first appears at 1 shows Prometheus' increase() no rise, and
        DeadLettersIncreasing would miss a new worker's first dead letters. Called once the
        handler is built, so that the DeadLetter classes of its modules are known."""
        access = ACCESS.get(self.worker)
        if access is not None and ORDERS_DLQ in access.writes:
            for reason in dead_letter_reasons():
                self.dead_letters.labels(self.worker, reason)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
