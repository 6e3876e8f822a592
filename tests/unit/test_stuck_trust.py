"""When the tracker's list of stuck orders cannot be trusted, judged from its group's lag."""

from __future__ import annotations

import pytest

from orderbus.ops.stuck import BEHIND_S, tracker_behind
from topics.lag import GroupLag, PartitionLag, Report

GROUP = "p.orderbus.tracker"


def report(
    *partitions: tuple[int, float | None], members: int = 1, error: str | None = None
) -> Report:
    """A lag report of the tracker's group: one (lag, seconds) per partition."""
    rows = [
        PartitionLag(GROUP, "p.tx.log.v1", i, 100, 100 + lag, lag, seconds, "OK")
        for i, (lag, seconds) in enumerate(partitions)
    ]
    groups = [GroupLag(GROUP, "OK", sum(lag for lag, _ in partitions), members)]
    return Report(rows, groups, {}, {GROUP: error} if error else {})


@pytest.mark.parametrize(
    "lag, behind",
    [
        (report((0, 0.0), (0, 0.0)), None),  # caught up
        (report((40, 2.5), (0, 0.0)), None),  # within its commit interval
        (report((1, 0.0)), None),  # only a transaction marker left
        (report((40, None)), None),  # age not read in time: no claim
        (
            report((40, BEHIND_S + 20), (5, 1.0)),
            "the tracker is 30s behind on its topics (45 records unread)",
        ),
        (report((40, 2.5), members=0), "the tracker's group has no member and 40 records unread"),
        (report((1, 0.0), members=0), None),  # stopped, but caught up
        (report(), "the tracker has committed no position yet"),
        (report((0, 0.0), error="timed out"), "the tracker's position cannot be read: timed out"),
    ],
)
def test_tracker_behind(lag, behind):
    assert tracker_behind(lag, GROUP) == behind
