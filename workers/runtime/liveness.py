"""Whether a worker is alive, as its watchdog judges it: progress on every partition it owns that
has records behind it.

A partition progresses when a batch of it commits, or when nothing is behind the consumer's
position. Polling alone is no progress: a partition held behind a leader that is away, or
behind an open Kafka transaction (a read_committed consumer stops at one; no orderbus principal
may open one, but a foreign producer or a record of an older release could), polls empty without
moving. Time the loop
spends retrying its database is not a stall either: the database's own retry budget bounds that
wait (workers/runtime/db.py), and restarting the worker would not bring the database back.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

Key = tuple[str, int]  # (topic, partition)


class Liveness:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()  # the loop writes; the watchdog and metrics read
        self._progress_at: dict[Key, float] = {}
        # with nothing owned, a finished loop round is all there is to show
        self._round_at = self._waited_at = clock()

    def assigned(self, keys: Iterable[Key]) -> None:
        """New partitions start with a clean slate: a full stall limit to show progress."""
        with self._lock:
            self._progress_at.update(dict.fromkeys(keys, self.clock()))

    def revoked(self, keys: Iterable[Key]) -> None:
        with self._lock:
            for key in keys:
                self._progress_at.pop(key, None)

    def owned(self) -> list[Key]:
        with self._lock:
            return list(self._progress_at)

    def progressed(self, keys: Iterable[Key]) -> None:
        """The end of a loop round, with the partitions that progressed in it (maybe none)."""
        with self._lock:
            now = self._round_at = self.clock()
            for key in keys:
                if key in self._progress_at:  # a partition revoked mid-batch stays gone
                    self._progress_at[key] = now

    def waiting(self) -> None:
        """The loop is waiting on its database, retrying, or re-folding a partition it was just
        given: busy on a dependency or on its own state, not stalled."""
        with self._lock:
            self._waited_at = self.clock()

    def stalled_s(self) -> float:
        """Seconds since the owned partition that waited longest progressed, not counting waits
        on the database."""
        with self._lock:
            since = min(self._progress_at.values(), default=self._round_at)
            return max(0.0, self.clock() - max(since, self._waited_at))
