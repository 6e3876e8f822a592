"""The supervisor's file_sd file: one target per child, on ports of their own, labelled by
service and slot, rewritten as instances come and go."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

from offline import offline_settings

from orderbus.commands.run import targets_file
from orderbus.ops.supervise import Supervisor


def test_exported_metrics_are_listed_for_file_based_discovery(tmp_path):
    settings = offline_settings(tmp_path, metrics_port=0)
    sup = Supervisor(settings, {"intake": 1, "payment": 2})
    assert [c.port for c in sup.children] == [0, 0, 0]  # metrics off, as the settings say
    targets = tmp_path / "targets" / "orderbus-workers.json"
    sup.export_metrics(targets)
    sup._write_targets()
    listed = json.loads(targets.read_text())
    ports = [c.port for c in sup.children]
    assert all(ports) and len(set(ports)) == 3
    assert listed == [
        {"targets": [f"127.0.0.1:{c.port}"], "labels": {"service": c.name, "slot": str(c.instance)}}
        for c in sup.children
    ]
    assert [p.name for p in targets.parent.iterdir()] == [targets.name]  # no temporary file left


def test_run_lists_its_workers_on_their_ports_until_it_stops(tmp_path):
    settings = offline_settings(tmp_path, metrics_port=9400)
    sup = Supervisor(settings, {"intake": 1, "payment": 2})
    sup.list_targets(targets_file(settings))
    sup._write_targets()
    listed = json.loads(sup.targets.read_text())
    assert [entry["targets"] for entry in listed] == [
        ["127.0.0.1:9400"],
        ["127.0.0.1:9401"],
        ["127.0.0.1:9402"],
    ]
    assert [entry["labels"]["service"] for entry in listed] == ["intake", "payment", "payment"]
    sup.stop()  # stopped on purpose: Prometheus forgets them rather than calling them down
    assert not sup.targets.exists()


def test_the_shipped_scrape_config_reads_what_run_writes_under_the_default_home():
    infra = Path(__file__).resolve().parents[2] / "infra" / "prometheus"
    config = (infra / "prometheus.yml").read_text()
    [pattern] = re.findall(
        r"job_name: orderbus-workers\n\s+file_sd_configs:\n\s+- files:\n\s+- (\S+)\n", config
    )
    default_home = offline_settings(infra.parents[1] / ".orderbus", metrics_port=9400)
    written = targets_file(default_home)
    assert fnmatch.fnmatch(str(written), str((infra / pattern).resolve())), (pattern, written)


def test_on_hosts_of_their_own_a_new_instance_never_takes_a_live_ones_address(tmp_path):
    settings = offline_settings(tmp_path, metrics_port=0, hosts=True)
    sup = Supervisor(settings, {"intake": 2, "payment": 1})
    assert [c.host for c in sup.children] == [100, 101, 102]
    sup.children.remove(sup.children[0])  # one instance scaled in, as `remove` forgets it
    taken = {c.host for c in sup.children}
    assert sup._next_host() not in taken
