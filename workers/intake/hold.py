"""Back-pressure: intake begins no new transactions while a worker downstream of it is far behind.

Without it an overload moves past intake into the commands topics and tx.log, where every order
begun holds a deadline clock and a place in the coordinator's memory however long the queue
before it. Held at intake, the backlog waits in orders.placed, where no clock runs and the
intake group's lag shows it. A participant that is down holds intake too, once its backlog is
full: the orders behind those wait for it rather than be aborted at their deadline.

The backlog is a group's committed lag, which trails what it has processed by up to the loop's
commit interval (workers/runtime/loop.py): at 400 orders/s about 1,200 tx.log records for the
coordinator, so the limit (Settings.intake_max_backlog) sits well above that.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from topics.catalogue import PARTITIONS
from topics.lag import backlog, group_reader

log = logging.getLogger(__name__)
CHECK_EVERY_S = 0.25
KEEP_UNKNOWN_S = 10.0


def hold(backlogs: list[int], held: bool, limit: int) -> bool:
    """Whether to hold: past the limit in any group; once held, until every group is back under
    half of it, so intake does not pause and resume on every look."""
    worst = max(backlogs, default=0)
    return worst > (limit // 2 if held else limit)


class Downstream:
    """Looks at the watched groups' backlogs from a thread of its own, so the loop never waits on
    the cluster for it; `holding()` is its latest answer. A look that fails (a group coordinator
    moving, a broker down) keeps the last answer for KEEP_UNKNOWN_S; past that it holds nothing,
    so the pipeline never stops on a monitoring fault alone."""

    def __init__(
        self,
        client: dict,
        watched: list[tuple[str, str]],
        limit: int,
        on_change: Callable[[bool], None] = lambda held: None,
    ):
        self.client = client
        self.watched, self.limit, self.on_change = watched, limit, on_change
        self.held = False
        self.known_at = self.warned_at = 0.0
        threading.Thread(target=self._run, daemon=True).start()

    def holding(self) -> bool:
        return self.held

    def _run(self) -> None:
        # made and used in this thread only
        admin = AdminClient({"log_level": 3, **self.client})
        readers = {g: group_reader(self.client, g) for g, _ in self.watched}
        while True:
            self._look(admin, readers)
            time.sleep(CHECK_EVERY_S)

    def _look(self, admin: AdminClient, readers: dict) -> None:
        try:
            backlogs = [backlog(admin, readers[g], t, PARTITIONS) for g, t in self.watched]
        except KafkaException as e:
            if time.monotonic() - self.known_at < KEEP_UNKNOWN_S:
                return
            if time.monotonic() - self.warned_at > 60:
                log.warning("downstream backlog unknown, not holding: %s", e.args[0])
                self.warned_at = time.monotonic()
            backlogs = []
        else:
            self.known_at = time.monotonic()
        held = hold(backlogs, self.held, self.limit)
        if held != self.held:
            log.info(
                "%s new orders: downstream backlogs %s (limit %d)",
                "holding" if held else "resuming",
                backlogs,
                self.limit,
            )
            self.held = held
            self.on_change(held)
