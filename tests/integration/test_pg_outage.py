"""PostgreSQL stopped for a minute under load: the workers wait for it (it is their database, not
their own fault) instead of being ended and restarted, the backlog drains once it is back, and
verify is clean. Like the chaos smoke's pg-restart, it stops the PostgreSQL of the cluster the
suite runs against, so run it on a cluster of its own (`make test` starts one)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from pipeline import Pipeline, order

from infra.postgres import server
from orderbus.ops.verify import verify

pytestmark = pytest.mark.integration

OUTAGE_S = 60
RATE = 20  # orders/s, before, during and after the outage


@pytest.mark.timeout(240)  # a minute away, then the backlog drained
def test_postgres_away_for_a_minute_under_load(settings, tmp_path):
    p = Pipeline(settings, "o" + uuid.uuid4().hex[:8], tmp_path, deadline_ms=10_000)
    published: dict[str, int] = {}  # order id -> when it was published, ms
    stop_load = threading.Event()

    def load():
        while not stop_load.is_set():
            oid = f"o-{len(published)}"
            p.publisher.publish(order(oid, f"oc{len(published) % 10}", ("o-sku", 1, 100)))
            published[oid] = int(time.time() * 1000)
            time.sleep(1 / RATE)

    try:
        p.stock(**{"o-sku": 1_000_000})
        p.account(**{f"oc{i}": 100_000_000 for i in range(10)})
        p.start()
        p.publish(order("o-warm", "oc0", ("o-sku", 1, 100)))
        p.wait_final(["o-warm"])
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        while len(published) < 2 * RATE:  # the load runs, and its first orders come through
            time.sleep(0.1)
        p.wait_final([f"o-{i}" for i in range(RATE)], timeout_s=60)
        server.stop(p.layout)
        try:
            time.sleep(OUTAGE_S)
        finally:
            server.restart(p.layout)
        back = time.monotonic()
        time.sleep(5)  # the load goes on a while with PostgreSQL back
        stop_load.set()
        loader.join(10)
        assert p.publisher.flush(30) == 0
        p.wait_final(published, timeout_s=180)
        drained_s = time.monotonic() - back
        final_ms = dict(
            p.sql(
                "orders",
                "SELECT order_id, changed_ms FROM order_status WHERE order_id = ANY(%s)",
                (list(published),),
            )
        )
        longest_s = max(final_ms[o] - at for o, at in published.items()) / 1000
        restarted = {c.label: c.restarts for c in p.sup.children if c.restarts}
        result = verify(p.settings, wait_s=120)
        print(
            f"\n{len(published)} orders; PostgreSQL away {OUTAGE_S}s; all final {drained_s:.1f}s "
            f"after it came back, the slowest order took {longest_s:.1f}s; restarts "
            f"{restarted or 'none'}; verify: "
            f"{len(result['violations'])} violations, {result['committed']} committed, "
            f"{result['aborted']} aborted"
        )
        assert restarted == {}, f"workers restarted during the outage: {restarted}"
        assert result["violations"] == [], result["violations"]
    finally:
        stop_load.set()
        p.close()
