"""The status read model keeps the furthest status."""

from __future__ import annotations

import itertools

import pytest

from schemas.events import StatusChanged
from workers.status.worker import latest

PENDING = StatusChanged("o-1", "PENDING", None, 10)
CONFIRMED = StatusChanged("o-1", "CONFIRMED", None, 20)
REJECTED = StatusChanged("o-1", "REJECTED", "payment:insufficient_funds", 20)
SHIPPED = StatusChanged("o-1", "SHIPPED", None, 30)


def row(e: StatusChanged) -> tuple:
    return (e.order_id, e.status, e.reason, e.at_ms)


@pytest.mark.parametrize(
    "events, furthest",
    [
        pytest.param([PENDING], PENDING, id="pending"),
        pytest.param([PENDING, CONFIRMED], CONFIRMED, id="confirmed"),
        pytest.param([PENDING, REJECTED], REJECTED, id="rejected"),
        pytest.param([PENDING, CONFIRMED, SHIPPED], SHIPPED, id="shipped"),
        pytest.param([CONFIRMED, SHIPPED, PENDING], SHIPPED, id="shipped-then-late-pending"),
        pytest.param([PENDING, PENDING], PENDING, id="redelivered-pending"),
    ],
)
def test_latest_any_order(events, furthest):
    for order in itertools.permutations(events):
        assert latest(order) == {"o-1": row(furthest)}


def test_latest_per_order():
    o2_pending = StatusChanged("o-2", "PENDING", None, 11)
    o2_rejected = StatusChanged("o-2", "REJECTED", "deadline", 21)
    o3_pending = StatusChanged("o-3", "PENDING", None, 12)
    batch = [SHIPPED, o2_rejected, PENDING, o3_pending, o2_pending, CONFIRMED]
    assert latest(batch) == {"o-1": row(SHIPPED), "o-2": row(o2_rejected), "o-3": row(o3_pending)}
    assert latest([]) == {}
