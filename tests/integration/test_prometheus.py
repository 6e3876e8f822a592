"""The monitoring end to end: a real Prometheus and Alertmanager scrape a sandbox pipeline (its
workers, its tracker and its lag exporter, found through file-based discovery), real faults are
caused, and each alert they should raise reaches Alertmanager's webhook with its labels; when the
faults end, the alerts resolve. The dashboard's queries run against the same Prometheus.

The rules are infra/prometheus/alerts.yml with every `for:` shortened (monitoring.fast_rules), so
the test takes about a minute; the real waits are tested by promtool (alerts_test.yml)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import uuid
from contextlib import ExitStack

import pytest
from monitoring import INFRA, Monitoring, Webhook, jobs
from pipeline import Pipeline, order

from orderbus.lab.sandbox import ONE_EACH
from orderbus.ops.supervise import free_port
from workers.tracker.snapshot import tracker_dir

pytestmark = pytest.mark.integration

# the jobs of infra/prometheus/prometheus.yml, which WorkerRestarting names too
WORKERS_JOB, LAG_JOB = "orderbus-workers", "orderbus-lag"
DEADLINE_MS = 4000
SCRAPED_S = 60  # every target up, from Prometheus' start
ALERT_S = 60  # each alert at the webhook, from its fault
QUIET_S = 15  # a pending alert from a transaction in flight gone, at one evaluation a second


def wait_for(check, timeout_s: float, what):
    """What `check` returns once it is true; `what` (a string, or a function that says what is
    missing) fails the test past `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (got := check()):
        assert time.monotonic() < deadline, (
            f"{what() if callable(what) else what}: not within {timeout_s:.0f}s"
        )
        time.sleep(0.25)
    return got


def all_up(mon: Monitoring, expected: int) -> bool:
    try:
        health = mon.targets_up()
    except OSError:
        return False  # Prometheus is still starting
    return len(health) == expected and set(health.values()) == {"up"}


def arrived(
    hook: Webhook, expected: dict[str, tuple[str, dict]], status: str = "firing"
) -> dict[str, float]:
    """{case: monotonic time its alert arrived} for the cases that have."""
    got = {case: hook.first(name, status, **labels) for case, (name, labels) in expected.items()}
    return {case: at for case, at in got.items() if at is not None}


def test_each_fault_raises_its_alert_at_alertmanager(settings, tmp_path):
    t0 = time.monotonic()
    mon = Monitoring(tmp_path / "monitoring")
    p = Pipeline(
        settings,
        "pm" + uuid.uuid4().hex[:8],
        tmp_path,
        deadline_ms=DEADLINE_MS,
        counts={**ONE_EACH, "tracker": 1},
    )
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, tracker_dir(p.settings), ignore_errors=True)
        stack.callback(p.close)  # runs after Prometheus has stopped: no scrape sees them go
        p.sup.export_metrics(mon.target_file(WORKERS_JOB))
        p.stock(**{"pm-sku": 100})
        p.account(**{"pm-cust": 1_000_000})
        p.start()
        lag_port = free_port()
        mon.target_file(LAG_JOB).write_text(json.dumps([{"targets": [f"127.0.0.1:{lag_port}"]}]))
        mon.child(
            stack,
            "lag",
            *(
                sys.executable,
                "-m",
                "orderbus",
                "lag",
                "--serve",
                f"127.0.0.1:{lag_port}",
                "--watch",
                "1",
            ),
            env={**os.environ, **p.env},
        )
        shipped_jobs = jobs((INFRA / "prometheus" / "prometheus.yml").read_text())
        assert {WORKERS_JOB, LAG_JOB} <= set(shipped_jobs), shipped_jobs
        hook = mon.start(stack, shipped_jobs)
        started = time.monotonic()

        wait_for(
            lambda: all_up(mon, len(p.sup.children) + 1),
            SCRAPED_S,
            "every worker and the lag exporter up",
        )
        scraped = time.monotonic()
        p.publish(order("pm-warm", "pm-cust", ("pm-sku", 1, 100)))
        p.wait_final(["pm-warm"], timeout_s=60)
        # increase() sees a first dead letter only over a series that was scraped at 0 before it
        wait_for(
            lambda: mon.query(
                'orderbus_dead_letters_total{worker="intake",reason="undecodable"} == 0'
            ),
            20,
            "intake's dead-letter series scraped at 0",
        )
        # the dashboard over the healthy pipeline: every panel's query answers, and with data
        # once an order has been through (a filter, `== 1` of groups not OK, may rightly be empty)
        dashboard = json.loads((INFRA / "grafana" / "orderbus.json").read_text())["panels"]
        exprs = [t["expr"] for panel in dashboard for t in panel.get("targets", [])]

        def without_data() -> list[str]:
            return [
                e for e in exprs if "==" not in e and not mon.query(e)
            ]  # api() fails on an error

        wait_for(
            lambda: not without_data(),
            20,
            lambda: f"dashboard queries without data: {without_data()}",
        )
        # none pending nor firing over the healthy pipeline: a scrape can catch the warm order's
        # yes vote held for the moment before its Commit is applied (the gauge at 1 makes
        # InDoubtTransactions pending until the next evaluation), so the check waits for a
        # quiet evaluation; an alert that holds stays and fails it
        wait_for(
            lambda: mon.api("alerts")["alerts"] == [],
            QUIET_S,
            lambda: f"alerts before any fault: {mon.api('alerts')['alerts']}",
        )

        # the faults, at once: each raises its own alerts, told apart by their labels
        fault_at = {"status killed": time.monotonic()}
        p.sup.hold(p.sup.find("status"), how=signal.SIGKILL)  # a crash, not restarted
        fault_at["junk published"] = time.monotonic()
        p.publisher.publish_raw(b"pm-junk", b"{not json")  # a dead letter at intake
        fault_at["coordinator stopped"] = time.monotonic()
        p.sup.hold(p.sup.find("coordinator"))  # no decisions: votes wait in doubt, orders get stuck
        fault_at["order published"] = time.monotonic()
        p.publish(order("pm-doubt", "pm-cust", ("pm-sku", 1, 100)))
        cause = {
            "status down": "status killed",
            "coordinator down": "coordinator stopped",
            "dead letter": "junk published",
            "inventory in doubt": "order published",
            "payment in doubt": "order published",
            "order stuck": "order published",
        }
        expected = {
            "status down": (
                "WorkerDown",
                {"job": WORKERS_JOB, "service": "status", "severity": "critical"},
            ),
            "coordinator down": ("WorkerDown", {"job": WORKERS_JOB, "service": "coordinator"}),
            "dead letter": ("DeadLettersIncreasing", {"worker": "intake", "reason": "undecodable"}),
            "inventory in doubt": (
                "InDoubtTransactions",
                {"worker": "inventory", "severity": "critical"},
            ),
            "payment in doubt": ("InDoubtTransactions", {"worker": "payment"}),
            "order stuck": ("OrdersStuck", {"job": WORKERS_JOB, "service": "tracker"}),
        }
        fired = wait_for(
            lambda: len(got := arrived(hook, expected)) == len(expected) and got,
            ALERT_S,
            lambda: (
                f"alerts at the webhook: {sorted(set(expected) - set(arrived(hook, expected)))} "
                "missing"
            ),
        )
        # and none for what was not broken
        assert {labels["service"] for labels in hook.labels("WorkerDown")} == {
            "status",
            "coordinator",
        }
        assert {labels["worker"] for labels in hook.labels("InDoubtTransactions")} == {
            "inventory",
            "payment",
        }
        assert {
            (labels["worker"], labels["reason"]) for labels in hook.labels("DeadLettersIncreasing")
        } == {("intake", "undecodable")}

        # the faults end: the coordinator decides the order in doubt (past its deadline: abort),
        # status records it. Dead letters stay in increase()'s 5-minute window
        back_at = time.monotonic()
        p.sup.release(p.sup.find("coordinator"))
        p.sup.release(p.sup.find("status"))
        p.wait_final(["pm-doubt"], timeout_s=60)
        resolving = {case: expected[case] for case in expected if case != "dead letter"}
        resolved = wait_for(
            lambda: len(got := arrived(hook, resolving, "resolved")) == len(resolving) and got,
            ALERT_S,
            lambda: (
                f"resolved: {sorted(set(resolving) - set(arrived(hook, resolving, 'resolved')))} "
                "missing"
            ),
        )

        others = sorted(
            {labels["alertname"] for _, a in hook.received for labels in [a["labels"]]}
            - {name for name, _ in expected.values()}
        )
        print(
            f"\nPrometheus started {started - t0:.1f}s after the test began; every target scraped "
            f"{scraped - started:.1f}s after it started; faults from "
            f"{fault_at['status killed'] - t0:.1f}s"
        )
        for case, at in sorted(fired.items(), key=lambda kv: kv[1]):
            name, since = expected[case][0], cause[case]
            print(
                f"  {case:<20} {name:<22} firing at the webhook {at - fault_at[since]:5.1f}s "
                f"after {since}"
            )
        for case, at in sorted(resolved.items(), key=lambda kv: kv[1]):
            print(f"  {case:<20} resolved {at - back_at:5.1f}s after the faults ended")
        print(
            f"  dashboard: {len(exprs)} queries answered, all but filters with data; other "
            f"alerts: {others}"
        )
