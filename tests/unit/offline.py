"""Real Settings for unit tests: no cluster behind them, so a test that tries to reach one
fails at once instead of waiting on a broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.runtime.settings import Settings

NOWHERE = "127.0.0.1:1"  # a port nothing listens on


def offline_settings(home: Path = Path("/nonexistent"), **overrides: Any) -> Settings:
    return Settings(home=home, bootstrap=NOWHERE, security="plaintext", **overrides)
