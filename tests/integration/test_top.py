"""`orderbus top --once` against a private pipeline: one plain-text frame with that pipeline's
groups and order counts, and the figures it cannot have marked n/a with the reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from confluent_kafka import Producer
from pipeline import order

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
