"""Plan, then execute. A dry run's plan is named by a hash of everything that decides what an
execution would do (the action, its parameters, and the plan's own rows: which dead letters go
where, which offset moves from where to where). Execution names the plan it was shown; the
server plans again and refuses when the name differs, so an operator never executes a preview
that went stale (a letter arrived, a consumer committed, a parameter was edited)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from orderbus.ops.replay import DlqRun
from topics.group_reset import PartitionPlan
from workers.status.rebuild import Comparison


def plan_id(action: str, params: dict[str, str], rows: Sequence[object]) -> str:
    doc = json.dumps([action, params, rows], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def redrive_id(params: dict[str, str], run: DlqRun) -> str:
    rows = [
        ["send", letter.id, letter.source, (letter.count() or 0) + 1]
        for letter in run.plan.selected
    ]
    rows += [["park", letter.id, why] for letter, why in run.plan.parked]
    return plan_id("redrive", params, rows)


def reset_id(params: dict[str, str], plans: list[PartitionPlan]) -> str:
    return plan_id("reset", params, [[p.topic, p.partition, p.current, p.target] for p in plans])


def rebuild_id(params: dict[str, str], c: Comparison) -> str:
    rows = [c.live, c.rebuilt, c.only_live, c.only_rebuilt, c.different, c.examples]
    return plan_id("rebuild status", params, rows)
