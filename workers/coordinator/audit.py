"""The decision audit and the coordinator rebuild: tx.log re-folded from its beginning, checked
against what the participants applied, what the status read model shows, and what the
coordinator resumes a partition with (its saved state and the log after it).

`compare` is pure over plain values (unit-tested with hand-made facts); `audit` and
`rebuild_coordinator` only gather them. A decision whose participant has not acknowledged it yet is
still travelling: a disagreement there is reported as pending, not as a mismatch.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Message, TopicPartition

from schemas import codec
from schemas.events import Event, OrderPlaced, Outcome
from topics.catalogue import ORDERS_PLACED, TX_LOG
from topics.lag import group_reader
from topics.read import coordinates, headers_of, read_events
from workers import invariants
from workers.coordinator import store as coordinator_store
from workers.coordinator.fold import Tx, fold, in_doubt, is_finished
from workers.coordinator.worker import take_over
from workers.participant import store as participant_store
from workers.participant.core import INVENTORY, PAYMENT
from workers.participant.store import LEDGERS
from workers.runtime.db import Database
from workers.runtime.settings import Settings
from workers.runtime.signing import Verifier
from workers.status import store as status_store

RESOURCES = {"inventory": INVENTORY, "payment": PAYMENT}
# how long the audit gives a database that is away to come back
READ_S = 10.0


@dataclass(frozen=True)
class Mismatch:
    order_id: str
    kind: str
    detail: str


def compare(
    txs: dict[str, Tx],
    orders: dict[str, OrderPlaced],
    holds: dict[str, dict[str, tuple[str, dict[str, int]]]],
    status: dict[str, tuple[str, str | None]],
) -> tuple[list[Mismatch], list[Mismatch], int]:
    """Every decided order of `txs` against the participants' `holds` (participant -> order id ->
    (state, amounts)) and the `status` read model (order id -> (status, reason)).
    Returns (mismatches, pending, audited)."""
    bad: list[Mismatch] = []
    pending: list[Mismatch] = []
    audited = 0
    for oid in sorted(txs):
        tx = txs[oid]
        if tx.outcome is None:
            continue
        order = orders.get(oid)
        if order is None:
            bad.append(
                Mismatch(
                    oid,
                    "unknown_order",
                    f"decided {tx.outcome} but never published as a valid order",
                )
            )
            continue
        audited += 1
        bad += [Mismatch(oid, "recorded_differs", what) for what in invariants.recorded_differs(tx)]
        bad += [
            Mismatch(oid, f"{p}_acked_other", f"{p} acknowledged the opposite of {tx.outcome}")
            for p in invariants.acked_other(tx)
        ]
        for p in tx.targets:
            if p not in RESOURCES:
                continue
            what = invariants.effect_wrong(
                tx.outcome, RESOURCES[p].demand(order), *holds.get(p, {}).get(oid, (None, {}))
            )
            if what:
                # not acknowledged yet: the decision is still on its way to the participant
                (pending if p not in tx.acked else bad).append(
                    Mismatch(
                        oid, f"{p}_{'not_applied' if tx.outcome == 'commit' else 'held'}", what
                    )
                )
        shown = status.get(oid, (None, None))[0]
        what = invariants.status_wrong(tx.outcome, shown)
        if what:
            travelling = shown in invariants.NOT_YET_SHOWN and not is_finished(tx)
            (pending if travelling else bad).append(Mismatch(oid, "status", what))
    return bad, pending, audited


# -- gathering -------------------------------------------------------------------------------


def fold_log(
    settings: Settings, topic: str, stops: dict[int, int] | None = None
) -> tuple[dict[str, Tx], dict[str, int], dict[str, Tx], int]:
    """The fold of every committed tx.log event: (order id -> Tx, order id -> partition,
    order id -> Tx as of `stops` (exclusive offsets), events read)."""
    txs: dict[str, Tx] = {}
    where: dict[str, int] = {}
    at_stop: dict[str, Tx] = {}
    n = 0
    verifier = Verifier.of(settings)
    for msg, event in read_events(settings.kafka(), topic, verifier.decode, timeout_s=600):
        n += 1
        oid = event.order_id
        txs[oid] = fold(txs.get(oid), event)
        _, partition, offset = coordinates(msg)
        where[oid] = partition
        if stops is not None and offset < stops.get(partition, 0):
            at_stop[oid] = txs[oid]
    return txs, where, at_stop, n


def placed_orders(kafka_config: dict[str, Any], topic: str) -> dict[str, OrderPlaced]:
    orders: dict[str, OrderPlaced] = {}
    for _, order in read_events(kafka_config, topic, placed_event, timeout_s=600):
        if isinstance(order, OrderPlaced):
            orders.setdefault(order.order_id, order)  # intake keeps the first
    return orders


def audit(settings: Settings) -> dict[str, Any]:
    """Re-fold all of tx.log and check every decision against the participants and the status
    read model. `settings` gives kafka(), names and dsns."""
    t0 = time.monotonic()
    names, kafka = settings.names, settings.kafka()
    txs, _, _, events = fold_log(settings, names.topic(TX_LOG))
    orders = placed_orders(kafka, names.topic(ORDERS_PLACED))
    holds = {
        p: Database.once(settings.dsns[ledger.database], participant_store.holds, READ_S)
        for p, ledger in LEDGERS.items()
    }
    status = Database.once(settings.dsns[status_store.DATABASE], status_store.statuses, READ_S)
    bad, pending, audited = compare(txs, orders, holds, status)
    return {
        "orders": audited,
        "events": events,
        "committed": sum(tx.outcome == "commit" for tx in txs.values()),
        "aborted": sum(tx.outcome == "abort" for tx in txs.values()),
        "open": sum(tx.outcome is None for tx in txs.values()),
        "seconds": round(time.monotonic() - t0, 2),
        "mismatches": [asdict(m) for m in bad],
        "pending": [asdict(m) for m in pending],
    }


def rebuild_coordinator(settings: Settings) -> dict[str, Any]:
    """The open transactions per tx.log partition, derived twice: by folding every event of the
    log, and as a new owner of each partition would resume it (`take_over`: the coordinator's
    saved state plus the log after it). They must agree at the position the resumed state stands
    at; the decisions re-derived must equal those recorded. Gathers, then compares (pure)."""
    t0 = time.monotonic()
    names = settings.names
    topic, group = names.topic(TX_LOG), names.group("coordinator")
    parts, committed_at = _committed(settings, topic, group)
    with Database(settings.dsns[coordinator_store.DATABASE], give_up_s=READ_S) as db:
        resumed, _ = take_over(settings, db, group, topic, parts)
    t_resume = time.monotonic() - t0
    stops = {p: part.next_offset for p, part in resumed.items()}
    txs, where, at_stop, events = fold_log(settings, topic, stops)
    t_fold = time.monotonic() - t0 - t_resume
    refold_open = {p: set(resumed[p].open) for p in parts}
    refold_outcome = {oid: tx.outcome for p in parts for oid, (tx, _) in resumed[p].open.items()}
    differences = compare_refold(parts, at_stop, where, refold_open, refold_outcome)
    partitions = [
        {
            "partition": p,
            "committed": committed_at[p],
            "position": stops[p],
            "open_by_log": sum(
                1 for oid, tx in at_stop.items() if where[oid] == p and not is_finished(tx)
            ),
            "open_by_refold": len(refold_open[p]),
            "open_now": sum(
                1 for oid, tx in txs.items() if where[oid] == p and not is_finished(tx)
            ),
        }
        for p in parts
    ]
    recorded_wrong = [
        {"order_id": oid, "fold": tx.outcome, "recorded": [list(r) for r in tx.recorded]}
        for oid, tx in sorted(txs.items())
        if invariants.recorded_differs(tx)
    ]
    return {
        "topic": topic,
        "group": group,
        "events": events,
        "orders": len(txs),
        "decided": sum(tx.outcome is not None for tx in txs.values()),
        "partitions": partitions,
        "open": open_orders(parts, txs, where),
        "differences": differences,
        "decisions_equal_recorded": not recorded_wrong,
        "recorded_differs": recorded_wrong,
        "fold_s": round(t_fold, 2),
        "refold_s": round(t_resume, 2),
    }


def _committed(settings: Settings, topic: str, group: str) -> tuple[list[int], dict[int, int]]:
    """The partitions of tx.log and the coordinator group's committed offset on each."""
    with closing(group_reader(settings.kafka(), group)) as reader:
        parts = sorted(reader.list_topics(topic, timeout=10).topics[topic].partitions)
        committed = reader.committed([TopicPartition(topic, p) for p in parts], timeout=30)
    return parts, {tp.partition: max(tp.offset, 0) for tp in committed}


def compare_refold(
    parts: list[int],
    at_stop: dict[str, Tx],
    where: dict[str, int],
    refold_open: dict[int, set[str]],
    refold_outcome: dict[str, Outcome | None],
) -> list[dict[str, Any]]:
    """Where a new owner's resumed state and the full fold (both at the resumed position)
    disagree, per partition: an order open in one and not the other, or decided otherwise."""
    differences: list[dict[str, Any]] = []
    for p in parts:
        by_log = {oid for oid, tx in at_stop.items() if where[oid] == p and not is_finished(tx)}
        by_refold = refold_open[p]
        for oid in sorted(by_log - by_refold):
            why = (
                "no TxBegun in the log (an orphan)" if not at_stop[oid].begun else "open in the log"
            )
            differences.append(
                _difference(
                    oid,
                    p,
                    "missing_in_refold",
                    f"{why}, but the coordinator's refold does not hold it",
                )
            )
        for oid in sorted(by_refold - by_log):
            differences.append(
                _difference(
                    oid, p, "extra_in_refold", "held open by the refold, finished by the full fold"
                )
            )
        for oid in sorted(by_log & by_refold):
            if refold_outcome[oid] != at_stop[oid].outcome:
                detail = f"refold {refold_outcome[oid]}, full fold {at_stop[oid].outcome}"
                differences.append(_difference(oid, p, "outcome_differs", detail))
    return differences


def _difference(order_id: str, partition: int, kind: str, detail: str) -> dict[str, Any]:
    return {"order_id": order_id, "partition": partition, "kind": kind, "detail": detail}


def open_orders(
    parts: list[int], txs: dict[str, Tx], where: dict[str, int]
) -> list[dict[str, Any]]:
    """Every transaction the full fold leaves open, with what it waits for."""
    return [
        {
            "order_id": oid,
            "partition": p,
            "outcome": tx.outcome,
            "in_doubt": in_doubt(tx),
            "votes": [list(v) for v in tx.votes],
            "waiting_for": sorted(set(tx.targets) - tx.acked)
            if tx.outcome
            else sorted(set(tx.participants) - {v[0] for v in tx.votes}),
        }
        for p in parts
        for oid, tx in sorted(txs.items())
        if where[oid] == p and not is_finished(tx)
    ]


def placed_event(msg: Message) -> Event:
    """An orders.placed record as intake decodes it (a record without a type header is an
    OrderPlaced)."""
    return codec.decode(msg.value(), headers_of(msg), default_type="OrderPlaced")
