"""What `orderbus replay dlq`, `replay reset` and `replay rebuild status` plan and do, for every
caller: the command line prints it, the console shows it and asks for the plan it showed to be
executed. The pure rules are in topics/redrive.py and topics/group_reset.py, the status rebuild in
workers/status/rebuild.py; this module reads the pipeline's settings, refuses a reset or a swap
while the group has members, and says what a reset means for orders."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaException

from orderbus.ops.errors import UsageError
from topics.catalogue import ALL, ORDERS_DLQ, ORDERS_STATUS
from topics.group_reset import Groups, PartitionPlan, ResetError, ResetSpec
from topics.redrive import (
    DlqFilter,
    DlqPlan,
    Letter,
    ReplayError,
    ReplayLog,
    plan_dlq,
    read_letters,
    redrive,
)
from workers.runtime.db import Database
from workers.runtime.settings import Settings
from workers.runtime.signing import Verifier
from workers.status import rebuild as status
from workers.status.store import DATABASE as STATUS_DATABASE

RESET_KINDS = ("to-datetime", "to-offset", "shift-by", "to-earliest", "to-latest")


def parse_time(text: str) -> int:
    """Epoch ms from ISO 8601 (naive = local time, as Kafka's tool reads it) or an integer."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise UsageError(
            f"{text!r} is not a time (ISO 8601, e.g. 2025-01-31T12:00:00, or epoch milliseconds)"
        ) from None


# -- dead letters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DlqRun:
    """A re-drive as planned: the topic, every letter in it, the plan over them, the replay log."""

    topic: str
    letters: list[Letter]
    plan: DlqPlan
    log: ReplayLog

    def targets(self) -> Counter[tuple[str, str | None]]:
        """(reason, target topic) -> letters the plan re-publishes there."""
        return Counter((letter.reason, letter.source) for letter in self.plan.selected)


def replay_log(settings: Settings) -> ReplayLog:
    return ReplayLog(settings.home / "replay" / f"{settings.names.topic(ORDERS_DLQ)}.jsonl")


def dlq_plan(settings: Settings, f: DlqFilter) -> DlqRun:
    """Reads the whole dead-letter topic and plans a re-drive with `f`. Raises UsageError when
    the topic cannot be read."""
    names = settings.names
    dlq = names.topic(ORDERS_DLQ)
    allowed = {names.topic(t) for t in ALL if t is not ORDERS_DLQ}
    log = replay_log(settings)
    try:
        letters = read_letters(settings.kafka(), dlq)
    except ReplayError as e:
        raise UsageError(str(e)) from None
    return DlqRun(dlq, letters, plan_dlq(letters, log.load(), allowed, f), log)


def dlq_execute(
    settings: Settings, run: DlqRun, rate: float | None = None
) -> tuple[int, list[str]]:
    """Re-publishes what `run` selected: (acknowledged, errors)."""
    return redrive(settings.kafka(), run.plan.selected, run.log, rate)


# -- offset reset ----------------------------------------------------------------------------


def refuse_if_active(groups: Groups, group: str, what: str) -> None:
    members = groups.members(group)
    if members:
        raise UsageError(
            f"group {group!r} has {len(members)} active member(s): "
            f"{', '.join(members)}; stop them before you {what} (a stopped static "
            "member stays listed until its session times out, ~3 s)"
        )


def wanted_topics(
    group: str, topics: list[str] | None, committed: Collection[tuple[str, int]]
) -> dict[str, list[int] | None]:
    """`T[:P,P]` specs as topic -> partitions (None: all); every topic the group committed
    offsets for when none is named."""
    if not topics:
        found = sorted({t for t, _ in committed})
        if not found:
            raise UsageError(f"group {group!r} has no committed offsets: name the --topic")
        return {t: sorted(p for tt, p in committed if tt == t) for t in found}
    out: dict[str, list[int] | None] = {}
    for spec in topics:
        name, _, parts = spec.partition(":")
        try:
            out[name] = sorted({int(p) for p in parts.split(",")}) if parts else None
        except ValueError:
            raise UsageError(
                f"--topic {spec!r}: partitions are integers, e.g. {name}:0,1"
            ) from None
    return out


def reset_plan(
    settings: Settings, group: str, spec: ResetSpec, topics: list[str] | None = None
) -> list[PartitionPlan]:
    """Where each partition of a stopped group would move. Raises UsageError for a group that
    does not exist, has members, or cannot be planned."""
    groups = Groups(settings.kafka())
    try:
        if not groups.exists(group):
            raise UsageError(f"no consumer group {group!r} on the cluster")
        refuse_if_active(groups, group, "reset its offsets")
        return groups.plan(group, spec, wanted_topics(group, topics, groups.committed(group)))
    except ResetError as e:
        raise UsageError(str(e)) from None
    except KafkaException as e:
        raise UsageError(f"the cluster could not be asked: {e.args[0].str()}") from None


def reset_execute(settings: Settings, group: str, plans: list[PartitionPlan]) -> None:
    """Commits the planned offsets, looking for members once more (one may have started since)."""
    groups = Groups(settings.kafka())
    try:
        refuse_if_active(groups, group, "reset its offsets")
        groups.commit(group, plans)
    except ResetError as e:
        raise UsageError(str(e)) from None


# what reading records again, or skipping them, does to each worker's orders
AGAIN = {
    "intake": "intake is idempotent by order id: an order read again begins nothing twice",
    "coordinator": "the coordinator resumes at its saved position (a reset offset carries no "
    "`folded` mark): nothing is re-decided, nothing skipped",
    "inventory": "a command read again returns the recorded vote or ack",
    "payment": "a command read again returns the recorded vote or ack",
    "shipping": "a shipment is booked once per order (ON CONFLICT DO NOTHING)",
    "status": "a status only moves forward: a repeated one changes nothing",
    "tracker": "the tracker folds the events again; its view catches up",
}
SKIPPED = {
    "intake": "orders skipped are never begun: neither rejected nor dead-lettered, they are lost "
    "to the pipeline until read again",
    "coordinator": "the coordinator resumes at its saved position whatever the offset says",
    "inventory": "commands skipped: a skipped Prepare leaves its order to abort at the deadline; "
    "a skipped Commit or Abort is re-sent by the coordinator",
    "payment": "commands skipped: a skipped Prepare leaves its order to abort at the deadline; "
    "a skipped Commit or Abort is re-sent by the coordinator",
    "shipping": "confirmed orders skipped are never shipped",
    "status": (
        "the status read model misses the skipped changes (rebuild it: replay rebuild status)"
    ),
    "tracker": "the tracker never sees the skipped events",
}


def reset_effect(settings: Settings, group: str, plans: list[PartitionPlan]) -> list[str]:
    """What the reset means for orders, in sentences: records read again and skipped, and what
    the group's worker does with each."""
    again = sum(
        max(0, p.lag_after - (p.lag_before or 0)) for p in plans if p.lag_before is not None
    )
    skipped = sum(
        max(0, (p.lag_before or 0) - p.lag_after) for p in plans if p.lag_before is not None
    )
    fresh = sum(p.lag_after for p in plans if p.lag_before is None)
    worker = next((w for w in AGAIN if settings.names.group(w) == group), None)
    out = []
    if again:
        out.append(f"{again} records read again" + (f": {AGAIN[worker]}" if worker else ""))
    if skipped:
        out.append(f"{skipped} records skipped" + (f": {SKIPPED[worker]}" if worker else ""))
    if fresh:
        out.append(f"{fresh} records to read where the group had committed nothing")
    if not out:
        out.append("no offset moves")
    if worker is None:
        out.append(f"{group} is not one of this pipeline's worker groups")
    return out


# -- status rebuild --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRebuild:
    """A rebuild of the status read model: what was folded, how the rebuilt table compares with
    the live one, whether it was swapped in, and whether the status worker ran meanwhile."""

    group: str
    topic: str
    folded: dict[str, Any]  # events, skipped, read_s, seconds
    comparison: status.Comparison
    swapped: bool
    worker_running: bool


def status_rebuild(
    settings: Settings,
    execute: bool = False,
    before_swap: Callable[[status.Comparison], None] = lambda c: None,
) -> StatusRebuild:
    """Folds orders.status into the rebuild table and compares it with the live one. With
    `execute`, swaps the rebuilt rows in: from before the first look for members until the swap
    commits, a status worker that starts (a supervisor restarting it) waits rather than write rows
    the swap would delete; refused (UsageError) while the group has members, or when
    `before_swap`, shown the comparison, raises."""
    group, topic = settings.names.group("status"), settings.names.topic(ORDERS_STATUS)
    groups = Groups(settings.kafka())
    dsn = settings.dsns[STATUS_DATABASE]

    def run(db: Database | None) -> StatusRebuild:
        if db is None:
            running = groups.exists(group) and bool(groups.members(group))
        else:  # refused while it has members
            refuse_if_active(groups, group, "swap the status table")
            running = False
        folded = status.rebuild(settings.kafka(), dsn, topic, Verifier.of(settings))
        comparison = status.compare(dsn)
        if db is not None:
            before_swap(comparison)
            refuse_if_active(groups, group, "swap the status table")
            status.swap(db)
        return StatusRebuild(group, topic, folded, comparison, db is not None, running)

    if not execute:
        return run(None)
    with status.writers_excluded(dsn) as db:
        return run(db)
