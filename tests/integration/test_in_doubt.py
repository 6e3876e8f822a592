"""The coordinator stopped for 30 s under load: yes-votes wait with their holds intact, the
in-doubt count rises, and returns to zero when the coordinator comes back; verify stays clean."""

from __future__ import annotations

import time
import uuid

import pytest
from pipeline import Pipeline, order

from orderbus.ops.report import build_report
from orderbus.ops.verify import verify

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)  # a 30 s absence and 200 orders decided after it
def test_coordinator_away_for_30s(settings, tmp_path):
    p = Pipeline(settings, "d" + uuid.uuid4().hex[:8], tmp_path, deadline_ms=10_000)
    try:
        p.stock(**{"d-sku": 1_000})
        p.account(**{f"dc{i}": 100_000 for i in range(10)})
        p.start()
        p.publish(order("d-warm", "dc0", ("d-sku", 1, 100)))
        p.wait_final(["d-warm"])
        coordinator = p.sup.find("coordinator")
        p.sup.hold(coordinator)
        stopped_at = time.monotonic()
        ids = [f"d-{i}" for i in range(200)]
        for i, oid in enumerate(ids):  # load while it is away: 20 orders/s
            p.publisher.publish(order(oid, f"dc{i % 10}", ("d-sku", 1, 100)))
            time.sleep(0.05)
        assert p.publisher.flush(30) == 0
        deadline = time.monotonic() + 20
        while p.sql("payments", "SELECT count(*) FROM holds WHERE state = 'held'")[0][0] < 200:
            assert time.monotonic() < deadline, "participants did not vote while it was away"
            time.sleep(0.5)
        assert p.sql("inventory", "SELECT count(*) FROM holds WHERE state = 'held'") == [(200,)]
        assert p.sql("inventory", "SELECT held FROM stock WHERE sku = 'd-sku'") == [(200,)]
        report = build_report(p.settings)
        assert report["in_doubt"] == 200
        assert report["orders"]["pending"] == 200
        time.sleep(max(0.0, 30 - (time.monotonic() - stopped_at)))
        assert p.sql("payments", "SELECT count(*) FROM holds WHERE state = 'held'") == [(200,)], (
            "a hold was released without a decision"
        )
        p.sup.release(coordinator)
        came_back = time.monotonic()
        p.wait_final(ids, timeout_s=90)
        p.wait_settled()
        print(
            f"\n200 in-doubt orders decided {time.monotonic() - came_back:.1f}s after the "
            "coordinator came back"
        )
        assert build_report(p.settings)["in_doubt"] == 0
        result = verify(p.settings, wait_s=60)
        assert result["violations"] == [], result["violations"]
    finally:
        p.close()
