"""What counts as a live worker, on the real cluster: the assigned-partitions gauge follows
assignments and revocations, and a worker whose partition cannot progress (every transaction
aborted and the batch read again) is ended by its watchdog and restarted."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from pipeline import Pipeline, order

from topics import acl
from workers.runtime.clients import LoopConfig
from workers.runtime.handler import Stateless
from workers.runtime.loop import Loop
from workers.runtime.metrics import ASSIGNED, Metrics

pytestmark = pytest.mark.integration


class Idle(Stateless):
    def __init__(self, topic: str):
        self.topics = (topic,)

    def process(self, messages, now_ms):
        return []


def owned(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(ASSIGNED, {"worker": metrics.worker})


def wait_for(what, timeout_s: float, describe) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, describe()
        time.sleep(0.2)


def test_assigned_partitions_gauge_follows_assign_and_revoke(settings, make_topic, unique):
    topic = make_topic("in", partitions=6)
    running = []

    def start(instance: int) -> Metrics:
        metrics = Metrics("idle")
        loop = Loop(
            settings, LoopConfig(group=unique, instance=str(instance)), Idle(topic), metrics
        )
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        running.append((loop, thread))
        return metrics

    try:
        first = start(0)
        wait_for(lambda: owned(first) == 6, 30, lambda: f"alone, it reports {owned(first)} of 6")
        second = start(1)
        wait_for(
            lambda: owned(second) and owned(first) + owned(second) == 6,
            30,
            lambda: f"two instances report {owned(first)} + {owned(second)} of 6",
        )
        loop, thread = running.pop()
        loop.stop()
        thread.join(30)
        assert owned(second) == 0  # it gave its partitions back on leaving
        wait_for(
            lambda: owned(first) == 6, 30, lambda: f"alone again, it reports {owned(first)} of 6"
        )
    finally:
        for loop, thread in running:
            loop.stop()
            thread.join(30)


def test_a_worker_whose_outputs_are_refused_is_restarted(settings, tmp_path):
    # shipping loses its write on orders.status: every batch with a CONFIRMED in it has an output
    # the brokers refuse, which must end the worker (to be restarted) rather than let it loop or
    # move past the batch
    p = Pipeline(settings, "l" + uuid.uuid4().hex[:8], tmp_path, deadline_ms=10_000)
    try:
        p.stock(**{"l-sku": 100})
        p.account(**{"l-cust": 100_000})
        p.start()
        p.publish(order("l-warm", "l-cust", ("l-sku", 1, 100)))
        p.wait_final(["l-warm"])
        shipping = p.sup.find("shipping")
        write = acl.Grant("shipping", "topic", "literal", p.status_topic, "write")
        acl.revoke(p.settings.kafka(), [write])
        p.publish(order("l-1", "l-cust", ("l-sku", 1, 100)))
        p.wait_final(["l-1"], final=("CONFIRMED",))
        refused_since = time.monotonic()
        wait_for(
            lambda: shipping.restarts > 0,
            60,
            lambda: (
                f"shipping still runs {time.monotonic() - refused_since:.0f}s after its output "
                "was refused"
            ),
        )
        log = (tmp_path / "logs" / "shipping-0.log").read_text()
        assert "not delivered" in log, log[-2000:]
        print(
            f"\nshipping restarted {time.monotonic() - refused_since:.0f}s after its output was "
            "refused"
        )
        acl.grant(p.settings.kafka(), [write])
        p.wait_final(["l-1"], timeout_s=90)
    finally:
        p.close()
