"""`orderbus top --once` against a private pipeline: one plain-text frame with that pipeline's
groups and order counts, and the figures it cannot have marked n/a with the reason."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from pipeline import order

from workers.tracker import snapshot
from workers.tracker.stages import SOURCES

pytestmark = pytest.mark.integration

WORKERS = ("intake", "coordinator", "inventory", "payment", "shipping", "status")


def total(frame: str, outcome: str) -> int:
    match = re.search(rf"\b{outcome}\b\W+(\d+)", frame)
    assert match, f"no {outcome} row in:\n{frame}"
    return int(match.group(1))


def test_once_shows_the_pipelines_groups_and_counts(pipe):
    pipe.stock(**{"sku-top": 3})
    pipe.account(**{"cust-top": 1_000_000})
    orders = [order(f"TOP-{i}", "cust-top", ("sku-top", 1, 500)) for i in range(5)]
    pipe.publish(*orders)  # stock for 3: two are rejected
    raw = Producer(pipe.settings.kafka())
    raw.produce(pipe.placed, key=b"TOP-garbage", value=b"not json")  # a dead letter
    assert raw.flush(30) == 0
    final = pipe.wait_final([o["order_id"] for o in orders])
    assert sorted(s for s, _ in final.values()) == ["REJECTED"] * 2 + ["SHIPPED"] * 3
    deadline = time.monotonic() + 30
    while not pipe.dead_letters(timeout_s=5) and time.monotonic() < deadline:
        time.sleep(0.5)

    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "orderbus", "top", "--once", "--interval", "1"],
        env={**os.environ, **pipe.env},
        capture_output=True,
        text=True,
        timeout=90,
    )
    took = time.monotonic() - started
    frame = r.stdout
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in frame  # stdout is a pipe: no colour, no cursor tricks
    assert f"pipeline {pipe.tag}" in frame
    for worker in WORKERS:
        assert pipe.settings.names.group(worker) in frame, worker
    shown = set(re.findall(r"[\w.-]*orderbus\.\w+", frame))
    assert shown == {pipe.settings.names.group(w) for w in WORKERS}, shown  # none of others'
    assert (
        total(frame, "placed"),
        total(frame, "confirmed"),
        total(frame, "rejected"),
        total(frame, "shipped"),
    ) == (5, 3, 2, 3)
    assert re.search(r"in doubt 0\b", frame)
    assert re.search(r"dead letters 1\b.*undecodable 1", frame)
    # the sandbox serves no metrics and runs no tracker: said, not hidden
    assert "n/a: tracker not reachable: metrics are off" in frame
    assert "STUCK ORDERS n/a: no snapshot" in frame
    assert took < 60, f"--once took {took:.0f}s"


def orderbus(pipe, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orderbus", *args],
        env={**os.environ, **pipe.env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_tracker_behind_names_no_final_order_as_stuck(pipe):
    """A tracker whose consumer fell behind and stopped while its timer still writes the snapshot
    names every order whose later events it has not read as stuck. `stuck` and `top` leave out
    the orders the status read model holds final and say that the list cannot be trusted."""
    pipe.stock(**{"sku-lag": 10})
    pipe.account(**{"cust-lag": 1_000_000})
    done = [f"LAG-{i}" for i in range(3)]
    pipe.publish(*(order(oid, "cust-lag", ("sku-lag", 1, 100)) for oid in done))
    assert {s for s, _ in pipe.wait_final(done).values()} == {"SHIPPED"}
    # the tracker's group: no member, its position at the start of every topic it reads
    tracker = pipe.settings.names.group("tracker")
    start = [
        TopicPartition(pipe.settings.names.topic(t), p, 0)
        for t in SOURCES
        for p in range(pipe.settings.partitions)
    ]
    admin = AdminClient(pipe.settings.kafka())
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(tracker, start)])[
        tracker
    ].result()
    # its snapshot, fresh, names them as placed and waiting for begun; LAG-ghost never was
    # published, and is stuck for real as far as anything here can tell
    named = [*done, "LAG-ghost"]

    def stuck_snapshot() -> None:  # as the tracker's timer writes it, every 2 s
        stuck = [
            {
                "order_id": oid,
                "stage": "placed",
                "waiting_for": "begun",
                "seconds_past_deadline": 60.0,
            }
            for oid in named
        ]
        snap = {"written_at_ms": int(time.time() * 1000), "stuck": stuck, "minutes": []}
        snapshot.write(snapshot.snapshot_path(pipe.settings), snap)

    try:
        stuck_snapshot()
        r = orderbus(pipe, "stuck", "--json")
        assert r.returncode == 1, r.stderr
        listed = json.loads(r.stdout)
        assert [s["order_id"] for s in listed["stuck"]] == ["LAG-ghost"]
        assert listed["left_out_final"] == len(done)
        assert any("behind" in why for why in listed["untrusted_because"]), listed

        stuck_snapshot()
        r = orderbus(pipe, "stuck")
        assert r.returncode == 1, r.stderr
        assert "LAG-ghost" in r.stdout and not re.search(r"LAG-\d", r.stdout), r.stdout
        assert "cannot be trusted" in r.stdout

        stuck_snapshot()
        r = orderbus(pipe, "top", "--once", "--interval", "1")
        frame = r.stdout
        assert r.returncode == 0, r.stderr
        assert "LAG-ghost" in frame and not re.search(r"LAG-\d", frame), frame
        assert "cannot be trusted" in frame, frame
    finally:
        shutil.rmtree(snapshot.tracker_dir(pipe.settings), ignore_errors=True)
