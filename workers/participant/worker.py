"""The participant shell: a batch of commands in one PostgreSQL transaction (its SQL in
store.py), then its votes and acks out; the loop commits the batch's offsets once they are
acknowledged."""

from __future__ import annotations

import logging
from typing import Callable

from confluent_kafka import Message

from schemas.events import Abort, Acked, Commit, Prepare, Voted
from topics.catalogue import COMMANDS, ORDERS_DLQ, TX_LOG, Names
from workers.participant import store
from workers.participant.core import Outcome, Resource, apply
from workers.participant.store import Ledger
from workers.runtime.crash import CrashPoints
from workers.runtime.db import Cursor, Database
from workers.runtime.handler import Out, Stateless
from workers.runtime.messages import decode_batch, emit
from workers.runtime.metrics import Metrics
from workers.runtime.signing import Verifier

log = logging.getLogger(__name__)


class ParticipantHandler(Stateless):
    accepts = ("Prepare", "Commit", "Abort")

    def __init__(
        self,
        resource: Resource,
        ledger: Ledger,
        db: Database,
        names: Names,
        metrics: Metrics,
        verifier: Verifier,
        crash: str = "",
    ) -> None:
        self.resource, self.ledger, self.db, self.metrics = resource, ledger, db, metrics
        # a Prepare counts only as intake's, a decision as the coordinator's
        self.verifier = verifier
        self.topics = (names.topic(COMMANDS),)
        self.tx_log, self.dlq = names.topic(TX_LOG), names.topic(ORDERS_DLQ)
        self.crash = CrashPoints(metrics.worker, crash)

    def process(self, messages: list[Message], now_ms: int) -> list[Out]:
        events, dead = decode_batch(
            messages, self.metrics, now_ms, self.accepts, self.dlq, check=self.verifier.check
        )
        commands = [e for _, e in events if isinstance(e, (Prepare, Commit, Abort))]
        if not commands:
            return dead
        outcome = self.db.run(lambda cur: self._apply(cur, commands))
        for line in outcome.anomalies:
            log.error("%s", line)
        return dead + [emit(self.tx_log, e, self._counted(e)) for e in outcome.outputs]

    def _counted(self, event: Voted | Acked) -> Callable[[], None] | None:
        """What an output adds to the votes counter, once it is acknowledged."""
        if not isinstance(event, Voted):
            return None
        return self.metrics.votes.labels(self.metrics.worker, event.vote, event.reason or "").inc

    def _apply(self, cur: Cursor, commands: list[Prepare | Commit | Abort]) -> Outcome:
        order_ids = sorted({c.order_id for c in commands})
        known = store.locked_holds(cur, order_ids)
        keys: set[str] = set()
        for c in commands:
            if isinstance(c, Prepare) and c.order_id not in known:
                keys.update(self.resource.demand(c.order))
            elif c.order_id in known:
                keys.update(known[c.order_id].amounts)
        available = store.available_for_update(cur, self.ledger, keys) if keys else {}
        outcome = apply(self.resource, available, known, commands)
        changed = [(k, d[0], d[1], d[2]) for k, d in sorted(outcome.deltas.items()) if any(d)]
        held = store.write(cur, self.ledger, outcome.holds.values(), changed)
        if any(h.state == "held" for h in outcome.holds.values()):
            self.crash.reach("after_hold")  # holds written, the transaction not committed
        self.metrics.in_doubt.labels(self.metrics.worker).set(held)
        return outcome
