"""Intake's back-pressure rules: hold past the limit, resume under half of it; a group whose
backlog cannot be read counts for nothing, and is said, once its last answer is too old."""

import pytest

from workers.intake.hold import hold, known


@pytest.mark.parametrize(
    "backlogs, held, expected",
    [
        ([], False, False),  # nothing known: never hold
        ([0, 10, 99], False, False),
        ([0, 101, 0], False, True),  # one group past the limit is enough
        ([100, 0], False, False),  # at the limit is not past it
        ([60, 0], True, True),  # held: stays held down to half...
        ([50, 49], True, False),  # ...and resumes there
        ([], True, False),  # a look that failed lets go
    ],
)
def test_hold(backlogs, held, expected):
    assert hold(backlogs, held, limit=100) is expected


W = [("g.coordinator", "tx"), ("g.inventory", "inv"), ("g.payment", "pay")]
NOW, KEEP = 100.0, 10.0


@pytest.mark.parametrize(
    "seen, since, backlogs, unknown",
    [
        ({}, 95.0, [], set()),  # just started, nothing read yet: nothing said
        ({}, 90.0, [], {"g.coordinator", "g.inventory", "g.payment"}),  # nothing read in 10 s
        ({w: (99.0, 7) for w in W}, 0.0, [7, 7, 7], set()),
        # one group's looks fail: its last answer counts for 10 s, then it is unknown and the
        # others still count
        ({W[0]: (91.0, 500), W[1]: (99.0, 7), W[2]: (99.0, 8)}, 0.0, [500, 7, 8], set()),
        ({W[0]: (90.0, 500), W[1]: (99.0, 7), W[2]: (99.0, 8)}, 0.0, [7, 8], {"g.coordinator"}),
        ({W[1]: (99.0, 7), W[2]: (99.0, 8)}, 0.0, [7, 8], {"g.coordinator"}),  # never read
    ],
)
def test_known(seen, since, backlogs, unknown):
    assert known(seen, W, NOW, since, keep_s=KEEP) == (backlogs, unknown)
