"""The alerts firing in Prometheus (infra/prometheus/alerts.yml), for the console: read from its
HTTP API rather than evaluated a second time here."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

TIMEOUT_S = 3.0


def firing(prometheus_url: str, timeout_s: float = TIMEOUT_S) -> list[dict[str, Any]]:
    """name, severity, labels, summary and since of every firing alert; raises OSError or
    ValueError when Prometheus cannot be asked."""
    with urllib.request.urlopen(
        prometheus_url.rstrip("/") + "/api/v1/alerts", timeout=timeout_s
    ) as r:
        doc = json.load(r)
    if doc.get("status") != "success":
        raise ValueError(f"Prometheus answered {doc.get('status')}: {doc.get('error', '')}")
    out: list[dict[str, Any]] = []
    for a in doc["data"]["alerts"]:
        if a.get("state") != "firing":
            continue
        labels = dict(a.get("labels", {}))
        out.append(
            {
                "name": labels.pop("alertname", "?"),
                "severity": labels.pop("severity", ""),
                "labels": labels,
                "summary": a.get("annotations", {}).get("summary", ""),
                "since": a.get("activeAt", ""),
            }
        )
    return sorted(out, key=lambda a: (a["severity"] != "critical", a["name"]))
