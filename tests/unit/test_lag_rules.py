"""Burrow's lag evaluation rules, one table row per case, over (seconds, committed, end) samples."""

from __future__ import annotations

import pytest

from topics.lag import ERR, OK, STALL, STATUSES, STOP, WARN, Sample, partition_status, worst


def window(*points) -> list[Sample]:
    """(committed, end) pairs, one second apart."""
    return [Sample(float(i), c, e) for i, (c, e) in enumerate(points)]


CASES = [
    # status, members, samples, why
    (OK, 1, window((10, 10), (10, 10), (10, 10)), "idle and caught up"),
    (OK, 1, window((5, 10), (10, 12), (12, 12)), "caught up at the end of the window"),
    (OK, 1, window((5, 10), (8, 10), (9, 12)), "lag falls: 5, 2, 3 is not growing throughout"),
    (OK, 1, window((0, 10), (0, 10), (10, 10)), "zero lag anywhere in the window: Burrow's rule 1"),
    (OK, 1, window((10, 20), (20, 30), (30, 40)), "keeping pace at a constant lag"),
    (OK, 1, window((3, 8)), "one sample shows no trend"),
    (OK, 0, window((7, 7), (7, 7)), "no members, nothing waiting"),
    (OK, 0, window((1, 5), (2, 7), (3, 7)), "no members, but committing (an assign-only consumer)"),
    (WARN, 1, window((10, 15), (12, 20), (14, 30)), "committing, but lag grows every interval"),
    (WARN, 2, window((0, 5), (1, 6), (2, 7), (3, 9)), "lag 5, 5, 5, 6: never falls, ends higher"),
    (STALL, 1, window((10, 15), (10, 15), (10, 15)), "members present, offset frozen, lag fixed"),
    (STALL, 3, window((10, 15), (10, 18), (10, 30)), "members present, offset frozen, lag grows"),
    (STOP, 0, window((10, 15), (10, 15), (10, 20)), "no members, offset frozen, work waiting"),
    (STOP, 0, window((10, 15)), "no members and work waiting, even on one sample"),
    (ERR, 1, window((10, 15), (4, 15), (6, 15)), "committed went backwards (an offset reset)"),
    (ERR, 1, window((10, 15), (10, None)), "log end could not be read"),
    (ERR, 1, window((None, 15), (10, 15)), "committed offset could not be read"),
    (ERR, 1, window((50, 60), (50, 3)), "committed past the log end: topic recreated"),
    (ERR, 1, [], "no samples at all"),
    (ERR, 0, window((10, 15), (5, 15)), "a reset outranks a stop"),
]


@pytest.mark.parametrize("status,members,samples,why", CASES, ids=[c[3] for c in CASES])
def test_partition_status(status, members, samples, why):
    assert partition_status(samples, members) == status


def test_every_status_has_a_case():
    assert {c[0] for c in CASES} == set(STATUSES)


def test_a_falling_end_after_markers_is_not_an_error():
    """The reader lowers a sample's end to its committed offset once only transaction markers are
    left; the window then shows the end falling, which must read as caught up."""
    assert partition_status(window((5, 10), (9, 9)), 1) == OK


@pytest.mark.parametrize(
    "statuses,expected",
    [
        ([], OK),
        ([OK, OK], OK),
        ([OK, WARN], WARN),
        ([WARN, STALL, OK], STALL),
        ([STALL, STOP], STOP),
        ([STOP, ERR, OK], ERR),
    ],
)
def test_a_group_takes_its_worst_partition(statuses, expected):
    assert worst(statuses) == expected
