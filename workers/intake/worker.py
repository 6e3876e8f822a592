"""Intake: validate each placed order, record it, start its transaction."""

from __future__ import annotations

from confluent_kafka import Message

from schemas.errors import RuleViolationError
from schemas.events import Event, OrderPlaced
from topics.catalogue import ORDERS_DLQ, ORDERS_PLACED, Names
from topics.read import coordinates
from workers.intake import store
from workers.intake.core import Seen, begin, classify
from workers.intake.hold import Downstream
from workers.runtime.db import Cursor, Database
from workers.runtime.handler import Out, Stateless
from workers.runtime.messages import dead_letter, decode_batch, emit, routed
from workers.runtime.metrics import Metrics
from workers.status import store as status


class IntakeHandler(Stateless):
    accepts = ("OrderPlaced",)

    def __init__(
        self,
        db: Database,
        names: Names,
        metrics: Metrics,
        deadline_ms: int,
        downstream: Downstream | None = None,
    ) -> None:
        self.db, self.metrics, self.deadline_ms = db, metrics, deadline_ms
        self.downstream = downstream
        self.topics = (names.topic(ORDERS_PLACED),)
        self.dest = names.destinations()
        self.dlq = names.topic(ORDERS_DLQ)

    def holding(self) -> frozenset[int]:
        return frozenset() if self.downstream is None else self.downstream.holding()

    def process(self, messages: list[Message], now_ms: int) -> list[Out]:
        events, outs = decode_batch(
            messages, self.metrics, now_ms, self.accepts, self.dlq, default_type="OrderPlaced"
        )
        if events:
            outs += self.db.run(lambda cur: self._record(cur, events, now_ms))
        return outs

    def _record(self, cur: Cursor, events: list[tuple[Message, Event]], now_ms: int) -> list[Out]:
        # waits for any other instance recording one of these ids (a copy on another partition)
        seen = store.seen(cur, [e.order_id for _, e in events])
        rows: list[store.OrderRow] = []
        outs: list[Out] = []
        for msg, order in events:
            assert isinstance(order, OrderPlaced)  # the only event it accepts
            _, partition, offset = coordinates(msg)
            digest = order.content_hash()
            kind = classify(seen.get(order.order_id), digest, partition, offset)
            if kind == "conflict":
                err = RuleViolationError(
                    f"order_id {order.order_id} was already used for an order with other content"
                )
                outs.append(dead_letter(msg, err, self.metrics, now_ms, self.dlq))
                continue
            if kind == "duplicate":
                continue
            # a redelivery begins again: its outputs may not have been delivered before a crash,
            # and after an offset reset it is harmless, since the coordinator keeps every
            # decision final
            if kind == "new":
                seen[order.order_id] = Seen(digest, partition, offset)
                rows.append(
                    (
                        order.order_id,
                        order.customer_id,
                        order.currency,
                        order.total_cents,
                        digest,
                        order.to_dict(),
                        partition,
                        offset,
                    )
                )
            outs += [
                emit(t, e) for t, e in routed(self.dest, begin(order, now_ms, self.deadline_ms))
            ]
        if rows:  # recorded with their PENDING rows, the read model showing them at once
            status.add_pending(cur, [r[0] for r in rows], after=store.recording(cur, rows))
        return outs
