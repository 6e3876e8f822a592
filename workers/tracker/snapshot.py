"""The tracker's snapshot file: what `orderbus stuck` reads. Written every few seconds with an
atomic rename, so a reader never sees half a file. No faust here: the CLI imports this module."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from workers.runtime.settings import Settings

MAX_AGE_S = 30.0


class SnapshotError(RuntimeError):
    """No usable snapshot: the tracker is not running, or has stopped writing."""


def tracker_dir(settings: Settings) -> Path:
    """The tracker's own directory. A prefixed pipeline (a test's, a bench's) gets a subfolder so
    its tracker does not overwrite the main one's files."""
    base = settings.home / "tracker"
    return base / settings.prefix.rstrip(".") if settings.prefix else base


def snapshot_path(settings: Settings, instance: int = 0) -> Path:
    return tracker_dir(settings) / ("stuck.json" if instance == 0 else f"stuck-{instance}.json")


def write(path: Path, snapshot: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(snapshot, sort_keys=True))
    os.replace(tmp, path)


def read(
    settings: Settings, now_s: float | None = None, max_age_s: float = MAX_AGE_S
) -> dict[str, Any]:
    """Every instance's fresh snapshot merged, or SnapshotError with what to do."""
    now_s = time.time() if now_s is None else now_s
    paths = sorted(tracker_dir(settings).glob("stuck*.json"))
    if not paths:
        raise SnapshotError(
            f"no snapshot in {tracker_dir(settings)}: is the tracker running? (`orderbus run "
            "tracker`)"
        )
    merged: dict[str, Any] = {"written_at_ms": 0, "stuck": [], "instances": 0}
    minutes: dict[int, dict[str, int]] = {}
    stale: list[str] = []
    for path in paths:
        try:
            snap = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced or removed between glob and read
        age = now_s - snap.get("written_at_ms", 0) / 1000
        if age > max_age_s:
            stale.append(f"{path.name} is {age:.0f}s old")
            continue
        merged["instances"] += 1
        merged["written_at_ms"] = max(merged["written_at_ms"], snap["written_at_ms"])
        merged["stuck"] += snap.get("stuck", [])
        for minute in snap.get("minutes", []):  # each instance counts its own partitions
            counts = minutes.setdefault(minute["start_ms"], {})
            for name, n in minute["counts"].items():
                counts[name] = counts.get(name, 0) + n
    if not merged["instances"]:
        raise SnapshotError(
            f"the tracker's snapshot is stale ({'; '.join(stale)}, limit "
            f"{max_age_s:.0f}s): is the tracker running?"
        )
    merged["stuck"].sort(key=lambda s: -s["seconds_past_deadline"])
    merged["minutes"] = [{"start_ms": k, "counts": minutes[k]} for k in sorted(minutes)]
    return merged
