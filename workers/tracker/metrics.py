"""Every Prometheus metric the tracker exports, declared once. Labels are bounded: stage, topic,
reason (a fixed set of refusal reasons), currency — never an order id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# stage latencies run from a few ms (votes) to the deadline and beyond (a stopped participant)
MS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)
# the names they are scraped under: `orderbus top` and the tests read them from here
STAGE_LATENCY = "orderbus_tracker_stage_latency_ms"
CONSUMED = "orderbus_tracker_messages_consumed_total"
UNDECODABLE = "orderbus_tracker_undecodable_total"
STUCK = "orderbus_orders_stuck"
ORDERS = "orderbus_tracker_orders"
LAST_MINUTE_ORDERS = "orderbus_tracker_last_minute_orders"
LAST_MINUTE_REVENUE = "orderbus_tracker_last_minute_revenue_cents"
LAST_MINUTE_REJECTIONS = "orderbus_tracker_last_minute_rejections"


class TrackerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry()
        self.stage_ms = Histogram(
            STAGE_LATENCY,
            "Time from an order's previous stage to this one (end_to_end: placed to final)",
            ["stage"],
            buckets=MS_BUCKETS,
            registry=r,
        )
        self.consumed = Counter(CONSUMED, "Messages read", ["topic"], registry=r)
        self.undecodable = Counter(
            UNDECODABLE,
            "Messages skipped because they do not decode",
            ["topic", "reason"],
            registry=r,
        )
        self.stuck = Gauge(
            STUCK,
            "Orders neither shipped nor rejected by their deadline plus the grace period",
            registry=r,
        )
        self.orders_tracked = Gauge(ORDERS, "Orders in order_to_stages", ["state"], registry=r)
        self.last_minute_orders = Gauge(
            LAST_MINUTE_ORDERS, "Orders placed in the last complete minute", registry=r
        )
        self.last_minute_revenue = Gauge(
            LAST_MINUTE_REVENUE,
            "Revenue placed in the last complete minute",
            ["currency"],
            registry=r,
        )
        self.last_minute_rejections = Gauge(
            LAST_MINUTE_REJECTIONS,
            "Orders rejected in the last complete minute",
            ["reason"],
            registry=r,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
