"""The supervisor's file_sd file: one target per child, on ports of their own, labelled by
service and slot, rewritten as instances come and go."""

from __future__ import annotations

import json
from types import SimpleNamespace

from orderbus.ops.supervise import Supervisor


def test_exported_metrics_are_listed_for_file_based_discovery(tmp_path):
    settings = SimpleNamespace(metrics_port=0, home=tmp_path)
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
