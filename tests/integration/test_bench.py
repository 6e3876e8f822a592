"""`orderbus bench` end to end on a small run: its report adds up, `--hops` splits every order's
latency into its steps, `--tracker-cold` times a tracker folding the run's events after the
pipeline stopped, `--open` holds every order open before it lets them go, and `--ceiling` reads
the pipeline's records/s against Kafka's own ProducerPerformance."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def bench(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orderbus", "bench", *args],
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_a_small_bench_reports_every_order_its_steps_and_the_cold_tracker():
    proc = bench("--orders", "200", "--rate", "100", "--hops", "--tracker-cold", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert r["orders"] == 200 and r["confirmed"] + r["rejected"] == 200
    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert 0 < r["orders_per_s"] <= 200
    assert set(r["rss_mb"]) == {
        f"{w}-0" for w in ("intake", "coordinator", "inventory", "payment", "shipping", "status")
    }
    # every order was confirmed after both votes: each has the whole chain of steps
    assert list(r["hops"]) == ["intake", "participants", "coordinator", "final_status"]
    for step in r["hops"].values():
        assert step["orders"] == 200 and 0 < step["p50_ms"] <= step["p99_ms"]
    assert sum(s["p50_ms"] for s in r["hops"].values()) <= r["max_ms"]
    cold = r["tracker_cold"]
    assert cold["orders"] == 500 and cold["instances"] == 1 and cold["seconds"] > 0  # + warm-up


def test_open_orders_are_all_held_before_they_go_through_and_the_ceiling_is_measured():
    proc = bench("--orders", "300", "--open", "--ceiling", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert r["completed"] == 300 and r["confirmed"] == 300, r["rejected_by_reason"]
    # nothing was decided while payment was held: all were open when the RSS was read
    assert r["open"]["orders"] == 300
    assert set(r["open"]["rss_mb"]) == set(r["rss_mb"])
    assert all(v > 0 for v in r["open"]["rss_mb"].values())
    assert r["ceiling_records_per_s"] > r["records_per_s"] > 0
    assert r["share_of_ceiling"] == pytest.approx(
        r["records_per_s"] / r["ceiling_records_per_s"], abs=0.001
    )


def test_tracker_and_tracker_cold_together_are_refused():
    proc = bench("--orders", "10", "--tracker", "--tracker-cold")
    assert proc.returncode == 2
    assert "choose one" in proc.stderr
