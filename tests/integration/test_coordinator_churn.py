"""Coordinator partitions revoked while they are busy: two instances under load while a third
joins and leaves again and again (each join and each clean leave moves live partitions between
the instances). Every order is decided, nothing stays held, and a new owner's view of each
partition agrees with a fold of the whole log."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from pipeline import Pipeline, order

from orderbus.ops.verify import verify
from workers.coordinator.audit import rebuild_coordinator

pytestmark = pytest.mark.integration

ORDERS, RATE, CHURNS = 3000, 100, 8


@pytest.mark.timeout(180)  # eight churns under 3,000 orders
def test_revoking_busy_coordinator_partitions_loses_nothing(settings, tmp_path):
    counts = {
        "intake": 1,
        "coordinator": 3,
        "inventory": 1,
        "payment": 1,
        "shipping": 1,
        "status": 1,
    }
    # partitions for three instances to share, so the third's leaving and joining moves work
    p = Pipeline(
        settings,
        "r" + uuid.uuid4().hex[:8],
        tmp_path,
        deadline_ms=8000,
        counts=counts,
        partitions=6,
    )
    try:
        p.stock(**{f"r-sku{i}": 100_000 for i in range(20)})
        p.account(**{f"r-c{i}": 10_000_000 for i in range(50)})
        p.start()
        third = p.sup.find("coordinator", 2)
        ids = [f"r-{i}" for i in range(ORDERS)]

        def load():
            t0 = time.monotonic()
            for i, oid in enumerate(ids):
                p.publisher.publish(order(oid, f"r-c{i % 50}", (f"r-sku{i % 20}", 1, 100)))
                time.sleep(max(0.0, t0 + (i + 1) / RATE - time.monotonic()))
            assert p.publisher.flush(30) == 0

        publisher = threading.Thread(target=load)
        publisher.start()
        p.wait_final(ids[:RATE], timeout_s=60)  # orders flow through the coordinators
        for _ in range(CHURNS):  # leave cleanly, then join again, while orders flow (its cadence)
            p.sup.hold(third)
            time.sleep(1.5)
            p.sup.release(third)
            time.sleep(2.0)
        publisher.join()
        p.wait_final(ids, timeout_s=180)
        p.wait_settled(timeout_s=90)
        result = verify(p.settings, wait_s=90)
        assert result["violations"] == [], result["violations"]
        assert result["committed"] == ORDERS
        assert sum(c.restarts for c in p.sup.children) == 0
        rebuilt = rebuild_coordinator(p.settings)
        assert rebuilt["differences"] == [] and rebuilt["decisions_equal_recorded"], rebuilt
        assert rebuilt["open"] == []
    finally:
        p.close()
