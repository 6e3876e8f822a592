"""The order tracker (faust) against a private pipeline on the real cluster: it follows orders to
shipped/rejected, shows an order stuck past its deadline, skips what does not decode, and every
topic faust creates for itself is replicated like ours."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from pipeline import Pipeline, order

from orderbus.ops.supervise import free_port
from topics.admin import delete
from topics.catalogue import ALL
from topics.partitioner import partition_for
from workers.tracker.metrics import ORDERS, STAGE_LATENCY, STUCK, UNDECODABLE
from workers.tracker.snapshot import tracker_dir

pytestmark = pytest.mark.integration

RETAIN_S = 3  # finished orders leave the tracker's table this soon (default 120 s)

# as `orderbus run tracker` does: its ACLs make its changelogs
RUN = (
    "import sys; from workers.runtime.settings import Settings; from workers.tracker.app import "
    "run_tracker; sys.exit(run_tracker(Settings.from_env().as_principal('tracker'), 0, "
    "int(sys.argv[1])))"
)


@pytest.fixture(scope="module")
def pipe(settings, tmp_path_factory):
    p = Pipeline(
        settings,
        "k" + uuid.uuid4().hex[:8],
        tmp_path_factory.mktemp("trk"),
        deadline_ms=3000,
        env={"ORDERBUS_TRACKER_RETAIN_S": str(RETAIN_S)},
    )
    p.start()
    p.port = free_port()
    p.tracker_log = open(p.sup.log_dir / "tracker.log", "ab")
    start_tracker(p)
    yield p
    stop_tracker(p)
    p.tracker_log.close()
    shutil.rmtree(tracker_dir(p.settings), ignore_errors=True)
    own = [
        t
        for t in AdminClient(settings.kafka()).list_topics(timeout=10).topics
        if t.startswith(p.settings.names.group("tracker"))
    ]
    if own:
        delete(settings.kafka(), own)
    p.close()


def start_tracker(p) -> None:
    p.tracker = subprocess.Popen(
        [sys.executable, "-c", RUN, str(p.port)],
        env={**os.environ, **p.env},
        stdout=p.tracker_log,
        stderr=subprocess.STDOUT,
    )


def stop_tracker(p) -> None:
    p.tracker.send_signal(signal.SIGTERM)
    try:
        p.tracker.wait(30)
    except subprocess.TimeoutExpired:
        p.tracker.kill()
        p.tracker.wait()


def cli(pipe, *args) -> tuple[int, str]:
    """Exit code and standard output (a `--json` document alone; the client library may log
    on standard error)."""
    r = subprocess.run(
        [sys.executable, "-m", "orderbus", *args],
        env={**os.environ, **pipe.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r.returncode, r.stdout


def metrics(pipe) -> dict[str, float]:
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{pipe.port}/metrics", timeout=5).read().decode()
    )
    return {
        k: float(v)
        for k, v in (
            line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
        )
    }


def wait_for(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = check()
            if got:
                return got
        except (OSError, ValueError, KeyError):
            pass  # the tracker is still starting
        assert time.monotonic() < deadline, f"{what} after {timeout_s:.0f}s"
        time.sleep(0.5)


def on_partition(prefix: str, partition: int, n: int, partitions: int) -> list[str]:
    ids = (f"{prefix}-{i}" for i in range(10_000))
    return [o for o in ids if partition_for(o.encode(), partitions) == partition][:n]


def test_follows_orders_to_shipped_and_rejected_and_skips_what_does_not_decode(pipe):
    pipe.stock(**{"t-sku": 10})
    pipe.account(**{"t-cust": 10_000})
    pipe.publisher.publish_raw(b"junk", b"{not json")
    assert pipe.publisher.flush(30) == 0
    # one partition: the expiry below is exact
    ok, nosku, later = on_partition("t", 0, 3, pipe.settings.partitions)
    pipe.publish(order(ok, "t-cust", ("t-sku", 2, 150)), order(nosku, "t-cust", ("zz-sku", 1, 100)))
    assert pipe.wait_final([ok, nosku])[ok][0] == "SHIPPED"
    m = wait_for(
        lambda: (
            (m := metrics(pipe))
            and m.get(f'{STAGE_LATENCY}_count{{stage="end_to_end"}}', 0) >= 2
            and m
        ),
        60,
        "the tracker did not see both orders finish",
    )
    assert m[f'{STAGE_LATENCY}_count{{stage="shipped"}}'] == 1
    assert m[f'{STAGE_LATENCY}_count{{stage="rejected"}}'] == 1
    assert m[f'{STAGE_LATENCY}_count{{stage="begun"}}'] == 2
    assert m[f'{UNDECODABLE}{{reason="undecodable",topic="orders.placed.v1"}}'] == 1
    snap = wait_for(
        lambda: (
            (s := json.loads((tracker_dir(pipe.settings) / "stuck.json").read_text()))["done"] >= 2
            and s
        ),
        10,
        "no snapshot with both orders done",
    )
    minute = {}
    for w in snap["minutes"]:
        for k, n in w["counts"].items():
            minute[k] = minute.get(k, 0) + n
    assert minute == {"orders": 2, "revenue_cents:EUR": 400, "rejected:inventory:unknown_sku": 1}
    assert cli(pipe, "stuck")[0] == 0
    # an event of the same partition past the retention drops both finished orders
    time.sleep(RETAIN_S + 0.5)
    pipe.publish(order(later, "t-cust", ("t-sku", 1, 100)))
    assert pipe.wait_final([later])[later][0] == "SHIPPED"
    m = wait_for(
        lambda: (m := metrics(pipe)) and m[f'{ORDERS}{{state="done"}}'] == 1 and m,
        30,
        "the finished orders were not dropped after their retention",
    )
    assert m[f'{ORDERS}{{state="open"}}'] == 0
    assert not any("tracker_error" in k for k in m)  # faust took the deletions


def test_an_order_past_its_deadline_without_a_decision_is_stuck(pipe):
    pipe.stock(**{"s-sku": 10})
    pipe.account(**{"s-cust": 10_000})
    # the payment participant stops; with the coordinator stopped too, no deadline abort comes
    down = [pipe.sup.find("payment"), pipe.sup.find("coordinator")]
    pipe.sup.stopping = True
    for child in down:
        child.proc.send_signal(signal.SIGTERM)
    for child in down:
        child.proc.wait(30)
    try:
        pipe.publish(order("s-late", "s-cust", ("s-sku", 1, 100)))
        # deadline 3 s + grace 5 s + a snapshot every 2 s
        code, out = wait_for(
            lambda: (r := cli(pipe, "stuck", "--json"))[0] == 1 and r,
            40,
            "s-late never showed as stuck",
        )
        stuck = json.loads(out)["stuck"]
        assert [(s["order_id"], s["stage"], s["waiting_for"]) for s in stuck] == [
            ("s-late", "voted_inventory", "voted_payment")
        ]
        assert stuck[0]["seconds_past_deadline"] > 5
        assert metrics(pipe)[STUCK] == 1
        assert cli(pipe, "stuck", "--grace", "3600")[0] == 0  # not that late
        # a restarted tracker restores the order from its changelog (its events are not read
        # again: their offsets are committed) and still shows it stuck
        stop_tracker(pipe)
        restarted_ms = time.time() * 1000
        start_tracker(pipe)
        snap = wait_for(
            lambda: (
                (s := json.loads((tracker_dir(pipe.settings) / "stuck.json").read_text()))[
                    "written_at_ms"
                ]
                > restarted_ms
                and s
            ),
            60,
            "no snapshot from the restarted tracker",
        )
        assert [s["order_id"] for s in snap["stuck"]] == ["s-late"]
    finally:
        pipe.sup.stopping = False
        for child in down:
            pipe.sup._spawn(child)
        pipe.sup.watch_in_background()
    # back up, it is decided at once: committed when payment votes before the coordinator sees
    # it silent for long, else aborted by the deadline; either way it is no longer stuck
    assert pipe.wait_final(["s-late"], timeout_s=60)["s-late"][0] in ("SHIPPED", "REJECTED")
    # (`stuck` leaves it out as soon as the status read model has it final; the tracker's own
    # gauge waits for the tracker to read the decision)
    wait_for(
        lambda: metrics(pipe)[STUCK] == 0,
        30,
        "the tracker still counts s-late stuck after its decision",
    )
    assert cli(pipe, "stuck")[0] == 0


def test_every_topic_faust_made_has_three_replicas(pipe, settings):
    admin = AdminClient(settings.kafka())
    group = pipe.settings.names.group("tracker")
    md = wait_for(
        lambda: (
            (md := admin.list_topics(timeout=10))
            and f"{group}-order_to_stages-changelog" in md.topics
            and md
        ),
        30,
        "no changelog",
    )
    ours = {pipe.settings.names.topic(t) for t in ALL}
    theirs = {t: m for t, m in md.topics.items() if t.startswith(pipe.tag + ".") and t not in ours}
    assert set(theirs) == {
        f"{group}-order_to_stages-changelog",
        f"{group}-minute_to_counts-changelog",
    }
    rf = min(3, pipe.settings.brokers)  # as `up` left the cluster
    for name, meta in theirs.items():
        assert len(meta.partitions) == pipe.settings.partitions, name
        assert {len(p.replicas) for p in meta.partitions.values()} == {rf}, name
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in theirs]
    for res, fut in admin.describe_configs(resources).items():
        configs = fut.result()
        assert configs["min.insync.replicas"].value == str(2 if rf == 3 else 1), res
        assert "compact" in configs["cleanup.policy"].value, res


def test_a_restarted_tracker_stops_within_seconds_of_sigterm(pipe, settings):
    # a SIGKILLed tracker stays a member of its group until its session times out, and a new
    # instance's join waits for it to go: the new one's shutdown must not wait that long
    admin, group = AdminClient(settings.kafka()), pipe.settings.names.group("tracker")
    wait_for(
        lambda: admin.describe_consumer_groups([group])[group].result().members,
        60,
        "the tracker is not a member of its group",
    )
    pipe.tracker.kill()
    pipe.tracker.wait()
    log = pipe.sup.log_dir / "tracker.log"
    joins = log.read_bytes().count(b"(Re-)joining group")
    start_tracker(pipe)
    wait_for(
        lambda: log.read_bytes().count(b"(Re-)joining group") > joins,
        60,
        "the restarted tracker did not try to join its group",
    )
    started = time.monotonic()
    pipe.tracker.send_signal(signal.SIGTERM)
    pipe.tracker.wait(120)
    took = time.monotonic() - started
    start_tracker(pipe)  # the module's fixture stops it
    assert took < 5, f"the tracker stopped {took:.1f}s after SIGTERM"
