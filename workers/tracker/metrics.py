"""Every Prometheus metric the tracker exports, declared once. Labels are bounded: stage, topic,
reason (a fixed set of refusal reasons), currency — never an order id."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# stage latencies run from a few ms (votes) to the deadline and beyond (a stopped participant)
MS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)


class TrackerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry()
        self.stage_ms = Histogram("orderbus_tracker_stage_latency_ms", "Time from an order's "
                                  "previous stage to this one (end_to_end: placed to final)",
                                  ["stage"], buckets=MS_BUCKETS, registry=r)
        self.consumed = Counter("orderbus_tracker_messages_consumed_total", "Messages read",
                                ["topic"], registry=r)
        self.undecodable = Counter("orderbus_tracker_undecodable_total", "Messages skipped because "
                                   "they do not decode", ["topic", "reason"], registry=r)
        self.stuck = Gauge("orderbus_orders_stuck", "Orders neither shipped nor rejected by their "
                           "deadline plus the grace period", registry=r)
        self.orders_tracked = Gauge("orderbus_tracker_orders", "Orders in order_to_stages",
                                    ["state"], registry=r)
        self.last_minute_orders = Gauge("orderbus_tracker_last_minute_orders", "Orders placed in "
                                        "the last complete minute", registry=r)
        self.last_minute_revenue = Gauge("orderbus_tracker_last_minute_revenue_cents", "Revenue "
                                         "placed in the last complete minute", ["currency"], registry=r)
        self.last_minute_rejections = Gauge("orderbus_tracker_last_minute_rejections", "Orders "
                                            "rejected in the last complete minute", ["reason"],
                                            registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
