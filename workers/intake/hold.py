"""Back-pressure: intake begins no new transactions while a worker downstream of it is far behind.

Without it an overload moves past intake into the commands topics and tx.log, where every order
begun holds a deadline clock and a place in the coordinator's memory however long the queue
before it. Held at intake, the backlog waits in orders.placed, where no clock runs and the
intake group's lag shows it. A participant that is down holds intake too, once its backlog is
full: the orders behind those wait for it rather than be aborted at their deadline.

The backlog is a group's committed lag, which trails what it has processed by up to the loop's
commit interval (workers/runtime/loop.py): at 400 orders/s about 1,200 tx.log records for the
coordinator, so the limit (Settings.intake_max_backlog) sits well above that.

It is judged per partition. Every topic of the pipeline has the same partition count and every
record is keyed by its order id, so an order read from partition p of orders.placed lands on
partition p of tx.log and of the commands topics: a partition behind downstream (an instance
crash-looping on it, a leader offline) holds the orders of that partition, and no other shop's.
Each partition may be its share of the limit behind.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from topics.lag import backlog, group_reader

log = logging.getLogger(__name__)
CHECK_EVERY_S = 0.25
KEEP_UNKNOWN_S = 10.0

Watched = tuple[str, str]  # (group, the topic it reads)
Backlog = dict[int, int]  # partition: records behind


def hold(
    backlogs: list[Backlog], held: frozenset[int], limit: int, partitions: int
) -> frozenset[int]:
    """The partitions to hold: those past their share of the limit in any group; once held,
    until every group is back under half of it, so intake does not pause and resume on every
    look."""
    share = max(1, limit // partitions)
    worst = {p: max((b.get(p, 0) for b in backlogs), default=0) for p in range(partitions)}
    return frozenset(
        p for p, behind in worst.items() if behind > (share // 2 if p in held else share)
    )


def known(
    seen: dict[Watched, tuple[float, Backlog]],
    watched: list[Watched],
    now: float,
    since: float,
    keep_s: float = KEEP_UNKNOWN_S,
) -> tuple[list[Backlog], set[str]]:
    """(the backlogs to hold on, the groups whose backlog is unknown). A backlog counts while its
    last good look (`seen`: when, backlog) is under `keep_s` old; a group with a topic whose last
    good look is older, or that has not been read in the `keep_s` since `since` (the start), is
    unknown."""
    backlogs: list[Backlog] = []
    unknown: set[str] = set()
    for group, topic in watched:
        at, records = seen.get((group, topic), (None, {}))
        if at is not None and now - at < keep_s:
            backlogs.append(records)
        elif now - (since if at is None else at) >= keep_s:
            unknown.add(group)
    return backlogs, unknown


class Downstream:
    """Looks at each watched group's backlog from a thread of its own, so neither the loop nor
    another group ever waits on the cluster for one; `holding()` is the latest answer.

    A look that fails (a group coordinator moving, a broker down, a grant lost) keeps that
    group's last answer for KEEP_UNKNOWN_S; past that the group counts for nothing until a look
    succeeds again, and `on_unknown(group, True)` says so (orderbus_backpressure_unknown, and
    the BackpressureUnknown alert). It fails open: intake holds for the groups it can read and
    never stops the pipeline on a monitoring fault alone, and an operator is told."""

    def __init__(
        self,
        client: dict[str, Any],
        watched: list[Watched],
        limit: int,
        partitions: int,
        on_change: Callable[[frozenset[int]], None] = lambda held: None,
        on_unknown: Callable[[str, bool], None] = lambda group, unknown: None,
    ):
        self.client = client
        self.watched, self.limit, self.partitions = watched, limit, partitions
        self.on_change, self.on_unknown = on_change, on_unknown
        self.held: frozenset[int] = frozenset()
        self.started = time.monotonic()
        self.seen: dict[Watched, tuple[float, Backlog]] = {}  # last good look: when, backlog
        self.errors: dict[Watched, str] = {}  # why the last look failed
        self.unknown: set[str] = set()  # as last said through on_unknown
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        # every series from the start, at 0 (a gauge first seen at 1 is no change to a rule)
        on_change(self.held)
        for group in sorted({g for g, _ in watched}):
            on_unknown(group, False)
        self.admin = AdminClient({"log_level": 3, **client})  # thread-safe; shared by the watchers
        for group, topic in watched:
            threading.Thread(target=self._watch, args=(group, topic), daemon=True).start()

    def holding(self) -> frozenset[int]:
        """The partitions whose new orders wait."""
        return self.held

    def close(self) -> None:
        self.stopped.set()

    def _watch(self, group: str, topic: str) -> None:
        reader = group_reader(self.client, group)  # made and used in this thread only
        try:
            while not self.stopped.is_set():
                try:
                    self._decide(
                        (group, topic), backlog(self.admin, reader, topic, self.partitions)
                    )
                except KafkaException as e:
                    self._decide((group, topic), error=str(e))
                # whatever a look raises, the group is unknown, not its watcher gone
                except Exception as e:
                    log.exception("looking at %s's backlog", group)
                    self._decide((group, topic), error=repr(e))
                self.stopped.wait(CHECK_EVERY_S)
        finally:
            reader.close()

    def _decide(self, looked: Watched, records: Backlog | None = None, error: str = "") -> None:
        """Takes one look's answer (its backlog, or why there is none) and decides again."""
        with self.lock:
            now = time.monotonic()
            if records is not None:
                self.seen[looked] = (now, records)
            else:
                self.errors[looked] = error
            backlogs, unknown = known(self.seen, self.watched, now, self.started)
            self._say(unknown)
            held = hold(backlogs, self.held, self.limit, self.partitions)
            if held != self.held:
                log.info(
                    "holding new orders of partitions %s (%s before): downstream backlogs %s "
                    "(limit %d)",
                    sorted(held) or "none",
                    sorted(self.held) or "none",
                    [sum(b.values()) for b in backlogs],
                    self.limit,
                )
                self.held = held
                self.on_change(held)

    def _say(self, unknown: set[str]) -> None:
        for group in sorted(unknown - self.unknown):
            why = "; ".join(e for (g, _), e in self.errors.items() if g == group)
            log.warning(
                "cannot read %s's backlog, not holding for it: %s", group, why or "no answer yet"
            )
            self.on_unknown(group, True)
        for group in sorted(self.unknown - unknown):
            log.info("%s's backlog is read again", group)
            self.on_unknown(group, False)
        self.unknown = unknown
