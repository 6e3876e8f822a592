"""What one frame of `orderbus top` holds: pure data, every figure or None with the reason it is
missing. `Gatherer.gather()` (top_gather.py) takes one; `render` (top.py) draws it. Kept apart
from the drawing so that only `top` needs rich, an extra (`pip install 'orderbus[top]'`)."""

from __future__ import annotations

from dataclasses import dataclass, field

OUTCOMES = ("placed", "confirmed", "rejected", "shipped")  # the rates shown, per second


@dataclass(frozen=True)
class GroupRow:
    group: str
    status: str
    lag: int
    members: int | None
    oldest_s: float | None  # age of the oldest unconsumed message; None: not read in time


@dataclass(frozen=True)
class StageRow:
    stage: str
    window_count: int  # observations since the previous frame
    window_p99_ms: float | None  # None: no observation in the window; inf: above every bucket
    total_p99_ms: float | None  # since the tracker started


@dataclass(frozen=True)
class StuckRow:
    order_id: str
    stage: str
    waiting_for: str
    seconds_past_deadline: float


@dataclass(frozen=True)
class Frame:
    """One refresh. A figure that could not be had is None and its `*_why` says why."""

    taken_at: float  # epoch seconds
    pipeline: str  # the topic prefix, or "main"
    window_s: float | None = None  # since the previous frame: rates, stage window
    groups: tuple[GroupRow, ...] | None = None
    groups_why: str | None = None
    under_replicated: int | None = None
    counts: dict[str, int] | None = None  # placed, pending, confirmed, rejected, shipped
    counts_why: str | None = None
    rates: dict[str, float] | None = None  # per second, over window_s
    rates_why: str | None = None
    in_doubt: int | None = None
    in_doubt_why: str | None = None
    dead_letters: int | None = None
    dead_letters_exact: bool = True
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    dead_letters_why: str | None = None
    stages: tuple[StageRow, ...] | None = None
    stages_source: str | None = None  # where the histogram was scraped
    stages_why: str | None = None
    stuck: tuple[StuckRow, ...] | None = None  # the most overdue first
    stuck_total: int = 0
    stuck_left_out_final: int = 0  # named by the tracker, final in the status read model
    stuck_untrusted_because: tuple[str, ...] = ()  # why the list cannot be trusted
    snapshot_age_s: float | None = None
    stuck_why: str | None = None
