"""Shipping: one shipment per confirmed order, exactly once (the order id is the key)."""

from __future__ import annotations

from confluent_kafka import Message

from schemas.events import StatusChanged
from topics.catalogue import ORDERS_DLQ, ORDERS_STATUS, Names
from workers.runtime.db import Database
from workers.runtime.handler import Out, Stateless
from workers.runtime.messages import decode_batch, emit
from workers.runtime.metrics import Metrics
from workers.runtime.signing import Verifier
from workers.shipping import store


class ShippingHandler(Stateless):
    accepts = ("StatusChanged",)

    def __init__(self, db: Database, names: Names, metrics: Metrics, verifier: Verifier) -> None:
        self.db, self.metrics = db, metrics
        self.verifier = verifier  # ships only what the coordinator confirmed
        self.status = names.topic(ORDERS_STATUS)
        self.topics = (self.status,)
        self.dlq = names.topic(ORDERS_DLQ)

    def process(self, messages: list[Message], now_ms: int) -> list[Out]:
        events, outs = decode_batch(
            messages, self.metrics, now_ms, self.accepts, self.dlq, check=self.verifier.check
        )
        confirmed = sorted(
            {
                e.order_id
                for _, e in events
                if isinstance(e, StatusChanged) and e.status == "CONFIRMED"
            }
        )
        if confirmed:
            # a redelivered CONFIRMED finds the row and announces SHIPPED again: the status
            # model ignores the repeat, and there is still one shipment
            self.db.run(lambda cur: store.book(cur, confirmed))
            outs += [
                emit(self.status, StatusChanged(o, "SHIPPED", None, now_ms)) for o in confirmed
            ]
        return outs
