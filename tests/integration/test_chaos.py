"""The CI chaos smoke: every fault kind once, under load, through the real command; verify is
clean, every fault recovered, and the cluster is whole again afterwards."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra.kafka import cluster
from infra.postgres import server

pytestmark = pytest.mark.integration

ALL = "worker-kill,worker-pause,worker-churn,broker-kill,broker-pause,pg-restart"


@pytest.mark.timeout(420)  # six fault kinds in turn: 2-3 minutes
def test_chaos_smoke_every_fault_kind(settings):
    # seed 149 fits all six kinds into 100 s of load; with start-up, drain and verify ~160 s
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orderbus",
            "chaos",
            "--duration",
            "100",
            "--faults",
            ALL,
            "--seed",
            "149",
            "--rate",
            "100",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert r["violations"] == [], (r["violations"], r["log_dir"])
    assert proc.returncode == 0
    assert {f["kind"] for f in r["faults"]} == set(ALL.split(","))
    for f in r["faults"]:
        assert f["recovery_s"] is not None, f"{f['kind']} {f['target']} never recovered: {f}"
        assert f["lifted_s"] is not None and f["lifted_s"] >= f["at_s"]
        assert f["publish_stall_s"] is not None  # orders went out (and came back) meanwhile
    o = r["orders"]
    assert o["published"] > 5000
    assert o["confirmed"] > 0 and o["rejected"] > 0 and o["dead_lettered"] > 0
    assert o["confirmed"] + o["rejected"] + o["dead_lettered"] == o["published"]
    assert 0 < r["max_gap_s"] < 60
    # the cluster is whole again: every broker serves metadata, PostgreSQL takes connections
    layout = settings.layout()
    assert all(cluster.serves_metadata(layout, n, timeout=10) for n in layout.nodes)
    server.admin_connect(layout, "postgres").close()
