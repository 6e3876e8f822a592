"""Where a reset moves one partition: the rules of Kafka's ConsumerGroupCommand."""

from __future__ import annotations

import pytest

from topics.group_reset import ResetError, ResetSpec, plan_reset


@pytest.mark.parametrize(
    "spec, current, by_time, target, note",
    [
        (ResetSpec("to-earliest"), 50, None, 10, ""),
        (ResetSpec("to-latest"), 50, None, 100, ""),
        (ResetSpec("to-offset", 40), 50, None, 40, ""),
        (ResetSpec("to-offset", 500), 50, None, 100, "past the log end"),
        (ResetSpec("to-offset", 3), 50, None, 10, "before the log start"),
        (ResetSpec("shift-by", -5), 50, None, 45, ""),
        (ResetSpec("shift-by", -100), 50, None, 10, "before the log start"),
        (ResetSpec("shift-by", 80), 50, None, 100, "past the log end"),
        (ResetSpec("to-datetime", 1), 50, 10, 10, "before the oldest retained"),
        (ResetSpec("to-datetime", 1), 50, 42, 42, ""),
        (ResetSpec("to-datetime", 1), 50, -1, 100, "no record at or after"),
        (ResetSpec("to-earliest"), None, None, 10, ""),
    ],
)
def test_plan(spec, current, by_time, target, note):
    p = plan_reset(spec, "t", 0, current, 10, 100, by_time)
    assert p.target == target
    assert note in p.note if note else p.note == ""
    assert p.lag_after == 100 - target


def test_shift_without_a_committed_offset_is_refused():
    with pytest.raises(ResetError, match="no committed offset"):
        plan_reset(ResetSpec("shift-by", 1), "t", 3, None, 0, 10)
