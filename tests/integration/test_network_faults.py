"""Network and clock faults, on hosts of their own: a private cluster made with `orderbus up
--hosts` (each broker and PostgreSQL in a network namespace with its own address) and a chaos run
in which every worker instance is a host of its own too, configured only as the README's "On
several machines" says, with every network fault kind once (a broker cut off from its peers, the
active controller cut off from everyone, a one-way cut, a worker cut off from Kafka, another from
its database, a lossy link) and an intake or coordinator host whose clock is ahead, then one whose
clock is behind. verify is clean, nothing is undelivered, and `down` leaves no namespace behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from infra import netns
from orderbus.lab.chaos.plan import CLOCK_KINDS, NET_KINDS, duration_for_all

KINDS = NET_KINDS + CLOCK_KINDS

pytestmark = pytest.mark.integration


def orderbus(env: dict, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orderbus", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def hosts_cluster(tmp_path):
    why = netns.available() or (None if os.geteuid() == 0 else "network namespaces need root")
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"network faults cannot run here: {why}")
        pytest.skip(why)
    env = {**os.environ, "ORDERBUS_HOME": str(tmp_path / "home")}
    for name in [
        k for k in env if k.startswith(("ORDERBUS_KAFKA_", "ORDERBUS_DSN_", "ORDERBUS_PG_"))
    ]:
        del env[name]  # the private cluster's own, not the suite's
    made = orderbus(env, "up", "--hosts", timeout=300)
    try:
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-3000:]
        yield env
    finally:
        gone = orderbus(env, "down", "--purge", timeout=120)
        assert gone.returncode == 0, gone.stderr[-2000:]
        assert netns.namespaces() == [], "down left namespaces behind"


@pytest.mark.timeout(600)  # eight faults, one of each kind, each healed: 4-5 minutes
def test_every_network_and_clock_fault_once_leaves_verify_clean(hosts_cluster):
    duration = duration_for_all(KINDS)  # one of each kind, whatever the seed
    args = ["chaos", "--duration", str(duration), "--faults", ",".join(KINDS), "--seed", "3"]
    proc = orderbus(hosts_cluster, *args, "--rate", "30", "--json", timeout=900)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert r["violations"] == [], (r["violations"], r["log_dir"])
    assert proc.returncode == 0
    assert {f["kind"] for f in r["faults"]} == set(KINDS)
    for f in r["faults"]:
        assert f["recovery_s"] is not None, f"{f['kind']} {f['target']} never recovered: {f}"
    o = r["orders"]
    assert o["undelivered"] == 0
    assert o["confirmed"] + o["rejected"] + o["dead_lettered"] == o["published"] > 0
    assert 0 < r["max_gap_s"] < 60
