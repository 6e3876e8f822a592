"""The stuck orders an operator may act on (`orderbus stuck`, `orderbus top`): the tracker's
candidates from its snapshot, less those the status read model holds final, and why the list
cannot be trusted when it cannot.

The tracker's timer writes its snapshot every 2 s whether or not its consumer keeps up. When the
consumer falls behind or stops, every order whose later events it has not read looks stuck at the
last stage it saw, shipped or not. The status read model is folded by its own worker, so an order
final there is not stuck whatever the tracker last saw; and the tracker group's lag says how far
behind the whole view is (a tracker behind also misses orders stuck after where it has read)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg2
from confluent_kafka import KafkaException

from orderbus.ops.errors import summary
from orderbus.ops.report import read_from
from topics.lag import LagError, LagReader, Report
from workers.runtime.settings import Settings, SettingsError
from workers.status import store as status_store
from workers.tracker import snapshot

# the tracker commits its position every 2.8 s (faust's default): the oldest record it has not
# committed past is older than this only when it is behind
BEHIND_S = 10.0
LAG_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Stuck:
    # the most overdue first: order_id, stage, waiting_for, seconds_past_deadline
    orders: list[dict[str, Any]]
    left_out_final: int  # named by the tracker, final in the status read model
    snapshot_age_s: float
    listed: int  # what the snapshot lists, past their deadline by any grace
    untrusted_because: tuple[str, ...]  # empty when the list can be trusted


def stuck_orders(settings: Settings, grace_s: float, tracker_lag: Report | str) -> Stuck:
    """The orders more than `grace_s` past their deadline. `tracker_lag` is a lag report that
    covers the tracker's group, or why none could be had. Raises snapshot.SnapshotError when
    the tracker has no fresh snapshot."""
    snap = snapshot.read(settings)
    candidates = [s for s in snap["stuck"] if s["seconds_past_deadline"] > grace_s]
    why = []
    final: set[str] = set()
    if candidates:
        ids = [s["order_id"] for s in candidates]
        try:
            final = read_from(
                settings, status_store.DATABASE, lambda cur: status_store.final_among(cur, ids)
            )
        except psycopg2.Error as e:
            model = f"{status_store.DATABASE} database: {summary(e)}"
            why.append(f"not checked against the status read model ({model})")
    if final:
        why.append(
            f"the tracker is behind: {len(final)} orders it names are shipped or rejected in the "
            "status read model (left out)"
        )
    behind = (
        f"whether the tracker is behind is unknown ({tracker_lag})"
        if isinstance(tracker_lag, str)
        else tracker_behind(tracker_lag, settings.names.group("tracker"))
    )
    if behind:
        why.append(behind)
    return Stuck(
        orders=[s for s in candidates if s["order_id"] not in final],
        left_out_final=len(final),
        snapshot_age_s=max(0.0, time.time() - snap["written_at_ms"] / 1000),
        listed=len(snap["stuck"]),
        untrusted_because=tuple(why),
    )


def tracker_behind(report: Report, group: str) -> str | None:
    """Why the tracker's view trails its topics, from its group's committed lag; None when it
    keeps up."""
    if group in report.errors:
        return f"the tracker's position cannot be read: {report.errors[group]}"
    mine = [p for p in report.partitions if p.group == group]
    if not mine:
        return "the tracker has committed no position yet"
    # lag_seconds 0 with a lag: only transaction markers or aborted records are left
    behind = [p for p in mine if p.lag and p.lag_seconds != 0.0]
    if not behind:
        return None
    unread = sum(p.lag or 0 for p in behind)
    members = next((g.members for g in report.groups if g.group == group), None)
    if members == 0:
        return f"the tracker's group has no member and {unread} records unread"
    ages = [p.lag_seconds for p in behind if p.lag_seconds is not None]
    if ages and max(ages) > BEHIND_S:
        return f"the tracker is {max(ages):.0f}s behind on its topics ({unread} records unread)"
    return None


def tracker_lag(settings: Settings) -> Report | str:
    """One look at the tracker group's lag, or why it could not be had."""
    try:
        reader = LagReader(settings.kafka(), settings.names, timeout_s=LAG_TIMEOUT_S)
    except SettingsError as e:  # no Kafka credentials here: the snapshot alone still answers
        return str(e)
    try:
        reader.sample([settings.names.group("tracker")])
        return reader.report()
    except (LagError, KafkaException) as e:
        return f"Kafka at {settings.bootstrap}: {summary(e)}"
    finally:
        reader.close()
