"""The participant shell: a batch of commands in one PostgreSQL transaction, votes and acks out
in the Kafka transaction that commits the batch's offsets."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from topics.catalogue import TX_LOG, ORDERS_DLQ
from workers.participant.core import Hold, Resource, apply
from workers.runtime.crash import CrashPoints
from workers.runtime.loop import Stateless
from workers.runtime.db import Database, Json, execute_values
from workers.runtime.messages import decode_batch, emit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ledger:
    """Where a participant keeps its balances: table, key column, and the three amount columns."""
    table: str
    key: str
    available: str
    held: str
    final: str


STOCK = Ledger("stock", "sku", "available", "held", "committed")
ACCOUNTS = Ledger("accounts", "customer_id", "balance_cents", "held_cents", "captured_cents")


class ParticipantHandler(Stateless):
    accepts = ("Prepare", "Commit", "Abort")

    def __init__(self, resource: Resource, ledger: Ledger, db: Database, names, metrics):
        self.resource, self.ledger, self.db, self.metrics = resource, ledger, db, metrics
        self.topics = (names.commands(resource.participant),)
        self.tx_log, self.dlq = names.topic(TX_LOG), names.topic(ORDERS_DLQ)
        self.crash = CrashPoints(metrics.worker)

    def process(self, messages, now_ms):
        events, dead = decode_batch(messages, self.metrics, now_ms, self.accepts, self.dlq)
        commands = [e for _, e in events]
        if not commands:
            return dead
        outcome = self.db.run(lambda cur: self._apply(cur, commands))
        for line in outcome.anomalies:
            log.error("%s", line)
        return dead + [emit(self.tx_log, e, self._counted(e)) for e in outcome.outputs]

    def _counted(self, event):
        """What an output adds to the votes counter, once its transaction commits."""
        if event.TYPE != "Voted":
            return None
        return self.metrics.votes.labels(self.metrics.worker, event.vote, event.reason or "").inc

    def _apply(self, cur, commands):
        L = self.ledger
        order_ids = sorted({c.order_id for c in commands})
        # one order at a time across instances: a hold not yet written has no row to lock, so
        # two instances given the same Prepare (a zombie's batch and its successor's, around a
        # rebalance) would both find it new and hold its amounts twice. Taken in key order,
        # before any row lock, so two batches never deadlock on a pair of orders.
        cur.execute("SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT "
                    "hashtextextended(id, 0) AS k FROM unnest(%s::text[]) AS id) AS ks ORDER BY k",
                    (order_ids,))
        cur.execute("SELECT order_id, vote, state, reason, amounts FROM holds "
                    "WHERE order_id = ANY(%s) FOR UPDATE", (order_ids,))
        known = {r[0]: Hold(r[0], r[1], r[2], r[3], r[4]) for r in cur.fetchall()}
        keys = set()
        for c in commands:
            if c.TYPE == "Prepare" and c.order_id not in known:
                keys.update(self.resource.demand(c.order))
            elif c.order_id in known:
                keys.update(known[c.order_id].amounts)
        available = {}
        if keys:
            # locked in key order, so two instances never deadlock on a pair of hot rows
            cur.execute(f"SELECT {L.key}, {L.available} FROM {L.table} WHERE {L.key} = ANY(%s) "
                        f"ORDER BY {L.key} FOR UPDATE", (sorted(keys),))
            available = dict(cur.fetchall())
        outcome = apply(self.resource, available, known, commands)
        if outcome.holds:
            execute_values(cur, "INSERT INTO holds (order_id, vote, state, reason, amounts) VALUES %s "
                           "ON CONFLICT (order_id) DO UPDATE SET vote = EXCLUDED.vote, "
                           "state = EXCLUDED.state, reason = EXCLUDED.reason, "
                           "amounts = EXCLUDED.amounts, changed_at = now()",
                           [(h.order_id, h.vote, h.state, h.reason, Json(dict(h.amounts)))
                            for h in outcome.holds.values()])
        if any(h.state == "held" for h in outcome.holds.values()):
            self.crash.reach("after_hold")
        changed = [(k, *d) for k, d in sorted(outcome.deltas.items()) if any(d)]
        if changed:
            # one UPDATE per batch however many orders touched a row: a flash sale's hot SKU
            # is written once per batch, not once per order
            execute_values(cur, f"UPDATE {L.table} AS t SET {L.available} = t.{L.available} + d.a, "
                           f"{L.held} = t.{L.held} + d.h, {L.final} = t.{L.final} + d.f "
                           f"FROM (VALUES %s) AS d(k, a, h, f) WHERE t.{L.key} = d.k", changed,
                           template="(%s, %s::bigint, %s::bigint, %s::bigint)")
        # yes-votes waiting for a decision: the in-doubt transactions an operator watches
        cur.execute("SELECT count(*) FROM holds WHERE state = 'held'")
        self.metrics.in_doubt.labels(self.metrics.worker).set(cur.fetchone()[0])
        return outcome
