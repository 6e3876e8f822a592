"""Overload shows as latency, never as rejected orders: a burst the pipeline needs many deadlines
to work through, with every participant up and stock and money ample, confirms every order."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from pipeline import Pipeline, order

from orderbus.ops.verify import verify

pytestmark = pytest.mark.integration

ORDERS = 3000


def test_a_burst_longer_than_the_deadline_rejects_nothing(settings, tmp_path):
    p = Pipeline(settings, "o" + uuid.uuid4().hex[:8], tmp_path, deadline_ms=1000)
    try:
        p.stock(**{f"o-sku{i}": 100_000 for i in range(100)})
        p.account(**{f"o-c{i}": 10_000_000 for i in range(100)})
        p.start()
        p.publish(order("o-warm", "o-c0", ("o-sku0", 1, 100)))
        p.wait_final(["o-warm"])
        ids = [f"o-{i}" for i in range(ORDERS)]
        p.publish(
            *(order(oid, f"o-c{i % 100}", (f"o-sku{i % 100}", 1, 100)) for i, oid in enumerate(ids))
        )
        final = p.wait_final(ids, timeout_s=300)
        outcomes = Counter(
            f"{status}:{reason}" if reason else status for status, reason in final.values()
        )
        assert outcomes == {"SHIPPED": ORDERS}, outcomes
        assert verify(p.settings, wait_s=90)["violations"] == []
    finally:
        p.close()
