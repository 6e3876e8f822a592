"""Waiting for a condition rather than for a guessed number of seconds."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(
    cond: Callable[[], bool], timeout_s: float, poll_s: float = 0.2, what: str | None = None
) -> bool:
    """Polls `cond` until it holds (True) or `timeout_s` has passed: then False, or, when `what`
    it waits for is named, TimeoutError saying so."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            if what is not None:
                raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
            return False
        time.sleep(poll_s)
    return True
