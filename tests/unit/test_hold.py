"""Intake's back-pressure rule: hold past the limit, resume under half of it."""

import pytest

from workers.intake.hold import hold


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
