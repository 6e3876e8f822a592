"""Intake's back-pressure rules: hold a partition past its share of the limit, resume it under
half of that; a group whose backlog cannot be read counts for nothing, and is said, once its last
answer is too old."""

import pytest

from workers.intake.hold import hold, known


def spread(*behind: int) -> dict[int, int]:
    return dict(enumerate(behind))


@pytest.mark.parametrize(
    "backlogs, held, expected",
    [
        ([], set(), set()),  # nothing known: never hold
        ([spread(0, 10, 25)], set(), set()),
        ([spread(0, 26, 0), spread(30, 0, 0)], set(), {0, 1}),  # past the share in any group
        ([spread(25, 0, 0)], set(), set()),  # at the share is not past it
        ([spread(13, 0, 0)], {0}, {0}),  # held: stays held down to half...
        ([spread(12, 0, 0)], {0}, set()),  # ...and resumes there
        ([spread(20, 20, 0)], {0}, {0}),  # a partition not held needs the whole share
        ([], {1}, set()),  # a look that failed lets go
        # one partition far behind holds its own orders only, however far behind it is
        ([spread(0, 0, 10_000)], set(), {2}),
    ],
)
def test_hold(backlogs, held, expected):
    assert hold(backlogs, frozenset(held), limit=100, partitions=4) == expected


W = [("g.coordinator", "tx"), ("g.inventory", "inv"), ("g.payment", "pay")]
NOW, KEEP = 100.0, 10.0


@pytest.mark.parametrize(
    "seen, since, backlogs, unknown",
    [
        ({}, 95.0, [], set()),  # just started, nothing read yet: nothing said
        ({}, 90.0, [], {"g.coordinator", "g.inventory", "g.payment"}),  # nothing read in 10 s
        ({w: (99.0, {0: 7}) for w in W}, 0.0, [{0: 7}] * 3, set()),
        # one group's looks fail: its last answer counts for 10 s, then it is unknown and the
        # others still count
        (
            {W[0]: (91.0, {0: 500}), W[1]: (99.0, {0: 7}), W[2]: (99.0, {0: 8})},
            0.0,
            [{0: 500}, {0: 7}, {0: 8}],
            set(),
        ),
        (
            {W[0]: (90.0, {0: 500}), W[1]: (99.0, {0: 7}), W[2]: (99.0, {0: 8})},
            0.0,
            [{0: 7}, {0: 8}],
            {"g.coordinator"},
        ),
        (
            {W[1]: (99.0, {0: 7}), W[2]: (99.0, {0: 8})},
            0.0,
            [{0: 7}, {0: 8}],
            {"g.coordinator"},
        ),  # never read
    ],
)
def test_known(seen, since, backlogs, unknown):
    assert known(seen, W, NOW, since, keep_s=KEEP) == (backlogs, unknown)
