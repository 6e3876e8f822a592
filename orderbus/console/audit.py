"""The audit trail: every change asked of the console, refused or done, dry run or execution,
one JSON line each in `$ORDERBUS_HOME/console/audit-<pipeline>.jsonl` (mode 0600), flushed to
disk before the answer goes back. Appended only; the console shows the newest first."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class AuditTrail:
    def __init__(self, path: Path):
        self.path = path

    def append(
        self,
        user: str,
        role: str,
        action: str,
        params: dict[str, Any],
        result: str,
        plan: str | None = None,
    ) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry = {
            "at_ms": int(time.time() * 1000),
            "user": user,
            "role": role,
            "action": action,
            "params": params,
            "plan": plan,
            "result": result,
        }
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def newest(self, n: int = 200) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out: list[dict[str, Any]] = []
        for line in self.path.read_text().splitlines()[-n:]:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line torn by a kill mid-write
        return out[::-1]
