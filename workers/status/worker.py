"""The order-status read model: orders.status folded into a table. A status only moves forward
(PENDING < CONFIRMED | REJECTED < SHIPPED), so a redelivered or late event never regresses it."""

from __future__ import annotations

from typing import Iterable

from confluent_kafka import Message

from schemas.events import StatusChanged
from topics.catalogue import ORDERS_DLQ, ORDERS_STATUS, Names
from workers.runtime.db import Cursor, Database
from workers.runtime.handler import Out, Stateless
from workers.runtime.messages import decode_batch
from workers.runtime.metrics import Metrics
from workers.runtime.signing import Verifier
from workers.status import store

RANK = {"PENDING": 0, "CONFIRMED": 1, "REJECTED": 1, "SHIPPED": 2}


def latest(events: Iterable[StatusChanged]) -> dict[str, store.Row]:
    """The furthest status per order in a batch."""
    best: dict[str, store.Row] = {}
    for e in events:
        row = (e.order_id, e.status, e.reason, e.at_ms)
        if e.order_id not in best or RANK[e.status] > RANK[best[e.order_id][1]]:
            best[e.order_id] = row
    return best


def write(cur: Cursor, events: Iterable[StatusChanged], table: str = store.LIVE) -> None:
    store.upsert(cur, sorted(latest(events).values()), table)


class StatusHandler(Stateless):
    accepts = ("StatusChanged",)

    def __init__(self, db: Database, names: Names, metrics: Metrics, verifier: Verifier) -> None:
        self.db, self.metrics = db, metrics
        self.verifier = verifier  # a status counts only as the service's that may say it
        self.topics = (names.topic(ORDERS_STATUS),)
        self.dlq = names.topic(ORDERS_DLQ)

    def process(self, messages: list[Message], now_ms: int) -> list[Out]:
        events, dead = decode_batch(
            messages, self.metrics, now_ms, self.accepts, self.dlq, check=self.verifier.check
        )
        if events:
            self.db.run(
                lambda cur: write(cur, [e for _, e in events if isinstance(e, StatusChanged)])
            )
        return dead
