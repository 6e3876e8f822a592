"""The live panes: ONE gatherer loop per server process, whatever the number of open pages.

Each round gathers what `orderbus top` gathers (ops/top_gather.py: lag with Burrow's status,
orders by outcome, dead letters, stage latency, stuck orders), the in-doubt list and the firing
alerts, renders each pane once and hands the fragments to every subscriber (one queue per
server-sent-events stream). A Kafka consumer per open tab would load the brokers and the group
coordinator; here a hundred tabs cost what one does. The gathering is synchronous
(confluent-kafka, psycopg2), so it runs in the executor and the server stays responsive."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections import deque
from typing import Any, Callable

import psycopg2

from orderbus.ops.alerts import firing
from orderbus.ops.errors import summary
from orderbus.ops.in_doubt import in_doubt
from orderbus.ops.top_gather import Gatherer
from workers.runtime.settings import Settings

log = logging.getLogger("orderbus.console")
TREND = 40  # looks of lag kept per group for its sparkline
QUEUE = 4  # rounds a slow client may fall behind before it skips to the newest


class Sources:
    """What one round reads, as plain data for the templates."""

    def __init__(self, settings: Settings, prometheus_url: str | None = None):
        self.settings, self.prometheus_url = settings, prometheus_url
        self.gatherer = Gatherer(settings)
        self.trend: dict[str, deque[int]] = {}

    def close(self) -> None:
        self.gatherer.close()

    def gather(self) -> dict[str, Any]:
        frame = self.gatherer.gather()
        report = self.gatherer.tracker_lag  # the frame's own lag report, per partition
        for g in frame.groups or ():
            self.trend.setdefault(g.group, deque(maxlen=TREND)).append(g.lag)
        data: dict[str, Any] = {
            "frame": frame,
            "trend": {g: list(v) for g, v in self.trend.items()},
            "at": time.time(),
        }
        data["report"] = None if isinstance(report, str) else report
        try:
            data["in_doubt"] = in_doubt(self.settings)
        except psycopg2.Error as e:
            data["in_doubt_why"] = summary(e)
        if self.prometheus_url:
            try:
                data["alerts"] = firing(self.prometheus_url)
            except (OSError, ValueError) as e:
                data["alerts_why"] = f"Prometheus at {self.prometheus_url}: {summary(e)}"
        else:
            data["alerts_why"] = "no Prometheus configured (orderbus console --prometheus URL)"
        return data


class Live:
    """Runs `gather` every `interval_s` in the executor and broadcasts `render(data)`: a dict of
    SSE event name -> HTML fragment."""

    def __init__(
        self,
        gather: Callable[[], dict[str, Any]],
        render: Callable[[dict[str, Any]], dict[str, str]],
        interval_s: float,
    ) -> None:
        self.gather, self.render, self.interval_s = gather, render, interval_s
        self.latest: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.rounds = 0
        self.subscribers: set[asyncio.Queue[dict[str, str] | None]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.data = await loop.run_in_executor(None, self.gather)
                self.latest = await loop.run_in_executor(None, self.render, self.data)
            except Exception as e:  # a round that fails must not end the loop: say so, go on
                log.exception("gathering failed")
                why = html.escape(summary(e))
                self.latest = {**self.latest, "error": f"<p class=warn>gathering failed: {why}</p>"}
            self.rounds += 1
            for queue in list(self.subscribers):
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(self.latest)
            await asyncio.sleep(self.interval_s)

    def subscribe(self) -> asyncio.Queue[dict[str, str] | None]:
        queue: asyncio.Queue[dict[str, str] | None] = asyncio.Queue(maxsize=QUEUE)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, str] | None]) -> None:
        self.subscribers.discard(queue)

    def close(self) -> None:
        """Ends every stream: each gets None."""
        for queue in list(self.subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
