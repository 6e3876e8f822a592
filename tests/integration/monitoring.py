"""A real Prometheus and Alertmanager (Debian's packages) for one test, as child processes on
free loopback ports with their data under the test's tmp dir, configured from orderbus's own
files, and a webhook receiver that records what Alertmanager delivers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orderbus.ops.supervise import free_port

INFRA = Path(__file__).resolve().parents[2] / "infra"
BINARIES = ("prometheus", "promtool", "prometheus-alertmanager")
# every `for:` of alerts.yml becomes this: the test proves what each rule watches fires and reaches
# Alertmanager; how long a rule waits stays the business of promtool's alerts_test.yml
TEST_FOR = "1s"
TICK = "1s"  # scrape and evaluation interval


def binaries() -> dict[str, str]:
    """The three binaries; missing ones fail the test under CI (where `make test` installs them
    with infra/prometheus/install.sh) and skip it elsewhere."""
    found = {name: shutil.which(name) for name in BINARIES}
    missing = [name for name, path in found.items() if not path]
    if missing:
        why = (
            f"{', '.join(missing)} not installed: infra/prometheus/install.sh installs them (as "
            "root, on Debian)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return {name: path for name, path in found.items() if path}


def fast_rules(alerts_yml: str) -> str:
    """alerts.yml with every `for:` shortened to TEST_FOR; expressions, labels and annotations as
    they are."""
    rules, n = re.subn(r"^(\s+for:\s*)\S+[ \t]*$", rf"\g<1>{TEST_FOR}", alerts_yml, flags=re.M)
    assert n, "alerts.yml has no `for:` to shorten: has its layout changed?"
    return rules


def jobs(prometheus_yml: str) -> list[str]:
    return re.findall(r"^\s*-\s*job_name:\s*(\S+)\s*$", prometheus_yml, re.M)


def prometheus_config(jobs: list[str], alertmanager_port: int) -> dict:
    """The shipped config's jobs, each discovering its targets in targets/<job>.json (resolved
    against the config's own directory), with the test's rules and Alertmanager."""
    return {
        "global": {"scrape_interval": TICK, "scrape_timeout": TICK, "evaluation_interval": TICK},
        "rule_files": ["alerts.yml"],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {"job_name": job, "file_sd_configs": [{"files": [f"targets/{job}.json"]}]}
            for job in jobs
        ],
    }


def alertmanager_config(webhook_url: str) -> dict:
    # grouped by every label ('...'): each alert is its own notification, sent without waiting
    return {
        "route": {
            "receiver": "test",
            "group_by": ["..."],
            "group_wait": "0s",
            "group_interval": TICK,
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "test", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        ],
    }


class Webhook(ThreadingHTTPServer):
    """Alertmanager's receiver: every alert delivered, with the monotonic time it arrived."""

    def __init__(self):
        self.received: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Receive)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/"

    def first(self, alertname: str, status: str = "firing", **labels: str) -> float | None:
        """When the first alert of that name, status and labels arrived, or None."""
        with self.lock:
            for at, alert in self.received:
                got = alert["labels"]
                if (
                    got.get("alertname") == alertname
                    and alert["status"] == status
                    and all(got.get(k) == v for k, v in labels.items())
                ):
                    return at
        return None

    def labels(self, alertname: str) -> list[dict]:
        with self.lock:
            return [
                a["labels"] for _, a in self.received if a["labels"].get("alertname") == alertname
            ]


class _Receive(BaseHTTPRequestHandler):
    server: Webhook

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        now = time.monotonic()
        with self.server.lock:
            self.server.received += [(now, alert) for alert in body["alerts"]]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


class Monitoring:
    """Prometheus, Alertmanager and the webhook, started by `start` and stopped by the ExitStack
    it is given (each process by its own Popen: nothing else is touched)."""

    def __init__(self, work: Path):
        self.bins = binaries()  # first: a test without them stops before it builds anything
        self.work = work
        self.targets = work / "config" / "targets"
        self.targets.mkdir(parents=True)
        self.prometheus_port = 0

    def target_file(self, job: str) -> Path:
        return self.targets / f"{job}.json"

    def start(self, stack: ExitStack, jobs: list[str]) -> Webhook:
        bins = self.bins
        hook = Webhook()
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        stack.callback(hook.server_close)
        stack.callback(hook.shutdown)
        config = self.work / "config"
        am_port, self.prometheus_port = free_port(), free_port()
        (config / "alerts.yml").write_text(
            fast_rules((INFRA / "prometheus" / "alerts.yml").read_text())
        )
        # JSON is YAML: both configs are written as JSON, no YAML library needed
        (config / "prometheus.yml").write_text(
            json.dumps(prometheus_config(jobs, am_port), indent=1)
        )
        (config / "alertmanager.yml").write_text(
            json.dumps(alertmanager_config(hook.url), indent=1)
        )
        check = subprocess.run(
            [bins["promtool"], "check", "config", str(config / "prometheus.yml")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.child(
            stack,
            "alertmanager",
            bins["prometheus-alertmanager"],
            f"--config.file={config / 'alertmanager.yml'}",
            f"--storage.path={self.work / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",  # no gossip port: a single Alertmanager
        )
        self.child(
            stack,
            "prometheus",
            bins["prometheus"],
            f"--config.file={config / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.work / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
        )
        return hook

    def child(self, stack: ExitStack, name: str, *argv: str, env: dict | None = None) -> None:
        """A process of the test's, its output in <work>/<name>.log, stopped when `stack` closes."""
        with open(self.work / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

        def stop():
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        stack.callback(stop)

    def api(self, path: str, **params: str):
        """The `data` of a Prometheus HTTP API answer."""
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def targets_up(self) -> dict[str, str]:
        """{instance: health} of every active target."""
        return {
            t["labels"]["instance"]: t["health"]
            for t in self.api("targets", state="active")["activeTargets"]
        }
