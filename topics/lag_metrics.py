"""The lag exporter's metrics (`orderbus lag --serve`), declared once: the alert rules and the
dashboard use these names, and LagCollector serves a LagReader's latest report under them."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from topics.lag import STATUSES, Report

LAG_MESSAGES = "orderbus_consumer_lag_messages"
LAG_SECONDS = "orderbus_consumer_lag_seconds"
GROUP_STATUS = "orderbus_consumer_group_status"
UNDER_REPLICATED = "orderbus_under_replicated_partitions"


class LagCollector(Collector):
    """Serves the latest report as a whole, so a scrape never sees half of one round and series of
    vanished groups and topics disappear with the next round."""

    def __init__(self) -> None:
        self.report: Report | None = None

    def describe(self) -> list[Metric]:
        return self._families(None)

    def collect(self) -> list[Metric]:
        return self._families(self.report)

    @staticmethod
    def _families(report: Report | None) -> list[Metric]:
        labels = ["group", "topic", "partition"]
        messages = GaugeMetricFamily(
            LAG_MESSAGES, "Log-end offset minus committed offset", labels=labels
        )
        seconds = GaugeMetricFamily(
            LAG_SECONDS, "Age of the oldest unconsumed message, seconds", labels=labels
        )
        status = GaugeMetricFamily(
            GROUP_STATUS,
            "1 for the group's current status (Burrow's rules), 0 for the others",
            labels=["group", "status"],
        )
        under = GaugeMetricFamily(
            UNDER_REPLICATED,
            "Partitions with fewer in-sync replicas than replicas",
            labels=["topic"],
        )
        if report is not None:
            for p in report.partitions:
                key = [p.group, p.topic, str(p.partition)]
                if p.lag is not None:
                    messages.add_metric(key, p.lag)
                if p.lag_seconds is not None:
                    seconds.add_metric(key, p.lag_seconds)
            for g in report.groups:
                for s in STATUSES:
                    status.add_metric([g.group, s], 1 if g.status == s else 0)
            for topic, count in report.under_replicated.items():
                under.add_metric([topic], count)
        return [messages, seconds, status, under]
