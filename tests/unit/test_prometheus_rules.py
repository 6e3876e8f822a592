"""The Prometheus config, alert rules and dashboard: promtool checks them, and every metric they
name is one that something in orderbus exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from topics.lag_metrics import GROUP_STATUS, LAG_SECONDS, UNDER_REPLICATED, LagCollector
from workers.runtime.metrics import Metrics
from workers.tracker.metrics import TrackerMetrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
DASHBOARD = ROOT / "infra" / "grafana" / "orderbus.json"

# every orderbus metric is named orderbus_*; `up` is Prometheus's own, per scrape target
METRIC = re.compile(r"\b(orderbus_[a-z0-9_]+|up)\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


@pytest.fixture(scope="module")
def check_sh() -> subprocess.CompletedProcess:
    """check.sh, run once; it installs promtool when it is missing (as root on Debian)."""
    return subprocess.run(
        ["bash", str(PROMETHEUS / "check.sh")], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def promtool(check_sh) -> str:
    path = shutil.which("promtool")
    assert path, f"promtool is unavailable:\n{check_sh.stderr}"
    return path


def test_config_rules_and_rule_tests_pass(check_sh):
    assert check_sh.returncode == 0, f"check.sh failed:\n{check_sh.stdout}\n{check_sh.stderr}"
    assert "Unit Testing:  alerts_test.yml\n  SUCCESS" in check_sh.stdout


def alert_exprs() -> list[str]:
    return re.findall(r"^\s*expr:\s*(.+?)\s*$", (PROMETHEUS / "alerts.yml").read_text(), re.M)


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    # promtool has no expression checker of its own; a rule file of recording rules is one
    rules = tmp_path / "dashboard_rules.yml"
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(dashboard_exprs()):
        lines += [f"      - record: dashboard_query_{i}", f"        expr: {json.dumps(expr)}"]
    rules.write_text("\n".join(lines) + "\n")
    run = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def exported() -> set[str]:
    families = list(Metrics("test").registry.collect())
    families += TrackerMetrics().registry.collect()
    families += LagCollector().describe()
    names = {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}
    return names | {"up"}


def name_of(metric) -> str:
    """The name a declared metric is scraped under (a counter's with its _total)."""
    family = metric.describe()[0]
    return family.name + ("_total" if family.type == "counter" else "")


@pytest.mark.parametrize(
    "source,exprs", [("alerts.yml", alert_exprs()), ("orderbus.json", dashboard_exprs())]
)
def test_every_metric_named_is_exported(source, exprs):
    assert len(exprs) >= 7  # parsed: an empty parse would pass the check below vacuously
    named = {m for expr in exprs for m in METRIC.findall(expr)}
    assert named - exported() == set(), f"{source} names metrics nobody exports"


def test_the_alerts_cover_what_operators_watch():
    named = {m for expr in alert_exprs() for m in METRIC.findall(expr)}
    worker, tracker = Metrics("test"), TrackerMetrics()
    watched = {
        GROUP_STATUS,
        LAG_SECONDS,
        UNDER_REPLICATED,
        name_of(worker.in_doubt),
        name_of(worker.dead_letters),
        name_of(worker.backpressure_unknown),
        name_of(tracker.stuck),
        "up",
    }
    assert watched - named == set()
