"""bench's figures from its readings: throughput over the orders that were through, latency
from publish, records and CPU per order, and an incomplete run said as such."""

from __future__ import annotations

import pytest

from orderbus.lab.bench import Plan, Readings, Timed, summarize


def readings(done: list[str], sent: dict[str, float], complete: bool = True) -> Readings:
    # the i-th order through took (i + 1) * 100 ms from publish to final; "r" is rejected
    final = {
        o: (sent[o] + 0.1 * (i + 1), "REJECTED" if o == "r" else "SHIPPED")
        for i, o in enumerate(done)
    }
    timed = Timed(
        sent=sent,
        sent_wall={o: 1000.0 + t for o, t in sent.items()},
        t0=0.0,
        publish_s=0.2,
        opened=None,
        complete=complete,
        ended=2.0,
        done=done,
        cpu_used={"intake": 0.4, "kafka": 1.2},
        broker_cpu=0.8,
        last=max(final[o][0] for o in done),
    )
    return Readings(
        ready_s=12.34,
        timed=timed,
        final=final,
        decided={o: sent[o] + 0.05 for o in done},
        reasons={"r": "inventory:out_of_stock"},
        records={"OrderPlaced": len(done), "TxBegun": len(done)},
        rss_peak={"intake": 55.55},
        rss_cpu={"intake": 1.04},
        restarts=0,
    )


def test_the_figures_of_a_complete_run():
    sent = {"a": 0.0, "b": 0.1, "c": 0.2, "r": 0.3}
    out = summarize(Plan(orders=4, rate=20), readings(["a", "b", "c", "r"], sent))
    assert out["complete"] and out["completed"] == 4 and out["backlog"] == 0
    assert (out["confirmed"], out["rejected"]) == (3, 1)
    assert out["rejected_by_reason"] == {"inventory:out_of_stock": 1}
    assert out["total_s"] == 0.7 and out["orders_per_s"] == 5.7  # 4 orders through in 0.7 s
    assert out["p50_ms"] == pytest.approx(300.0) and out["max_ms"] == pytest.approx(400.0)
    assert out["decided_p50_ms"] == pytest.approx(50.0)
    assert out["records_per_order"] == 2.0 and out["records_per_s"] == 11.4
    assert out["cpu_ms_per_order"] == {"intake": 100.0, "kafka": 300.0}
    assert out["cores_busy"] == 0.8  # 1.6 CPU seconds over the 2 s run
    assert out["broker_cpu_s_per_1000"] == 200.0
    assert out["ready_s"] == 12.3 and out["rss_mb"] == {"intake": 55.5}
    assert out["verify"] is None and out["share_of_ceiling"] is None


def test_an_incomplete_run_counts_its_backlog_and_only_what_was_through():
    sent = {"a": 0.0, "b": 0.1, "c": 0.2, "r": 0.3}
    out = summarize(Plan(orders=4), readings(["a", "b"], sent, complete=False))
    assert not out["complete"] and out["completed"] == 2 and out["backlog"] == 2
    assert out["confirmed"] == 2 and out["rejected"] == 0
    assert out["cpu_ms_per_order"]["intake"] == 200.0  # per order through, not per order sent
