"""One order's whole story (`orderbus order ID --events`, the console's order timeline): every
record on every topic of the catalogue keyed by its id, in time order with the time each hop
took, beside every row each service's database holds for it (`report.order_view`).

Every record about an order is keyed by its id, so on each topic it sits on one partition, the
one Kafka's partitioner picks (topics/partitioner.py): only that partition is read, from its
start. On a long-lived tx.log that is a scan; `timeout_s` bounds it and the result says which
topics were not read to their end."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient

from orderbus.ops.errors import summary
from orderbus.ops.report import order_view
from topics.catalogue import ALL, DLQ_REASON
from topics.partitioner import partition_for
from topics.read import BEGINNING, IncompleteRead, ReadError, coordinates, read, text_headers
from workers.runtime.settings import Settings

READ_S = 10.0  # per topic
# the fields of an event's body worth a column on a timeline (the rest is in `body`)
SHOWN = ("participant", "vote", "outcome", "status", "reason", "deadline_ms", "participants")


def order_events(settings: Settings, order_id: str, timeout_s: float = READ_S) -> dict[str, Any]:
    """{"events": [...], "unread": {topic: why}}: each event with topic, partition, offset, type,
    at_ms, hop_ms (since the event before it), summary and body."""
    key = order_id.encode()
    config = settings.kafka()
    events: list[dict[str, Any]] = []
    unread: dict[str, str] = {}
    try:
        topics = AdminClient({"log_level": 3, **config}).list_topics(timeout=timeout_s).topics
        counts = {name: len(meta.partitions) for name, meta in topics.items()}
    except KafkaException as e:
        return {"events": [], "unread": {"*": f"Kafka at {settings.bootstrap}: {summary(e)}"}}
    for topic in ALL:
        name = settings.names.topic(topic)
        if name not in counts:
            unread[name] = "no such topic"
            continue
        start = {partition_for(key, counts[name]): BEGINNING}
        try:
            for msg in read(config, name, starts=start, timeout_s=timeout_s):
                if msg.key() == key:
                    events.append(_event(msg))
        except IncompleteRead as e:
            unread[name] = str(e)
        except (ReadError, KafkaException, KeyError) as e:
            unread[name] = summary(e)
    events.sort(key=lambda e: (e["at_ms"], e["topic"], e["offset"]))
    for before, after in zip([None, *events], events):
        after["hop_ms"] = None if before is None else after["at_ms"] - before["at_ms"]
    return {"events": events, "unread": unread}


def _event(msg: Message) -> dict[str, Any]:
    topic, partition, offset = coordinates(msg)
    headers = text_headers(msg)
    try:
        body = json.loads(msg.value() or b"")
    except ValueError:
        body = None
    kind = headers.get("type") or ("dead letter" if DLQ_REASON in headers else "?")
    shown = {k: body[k] for k in SHOWN if isinstance(body, dict) and body.get(k) is not None}
    if DLQ_REASON in headers:
        shown["dlq.reason"] = headers[DLQ_REASON]
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "type": kind,
        "at_ms": msg.timestamp()[1],
        "summary": shown,
        "body": body,
    }


def order_timeline(
    settings: Settings, order_id: str, timeout_s: float = READ_S
) -> dict[str, Any] | None:
    """order_view plus the order's events; None when neither a database nor a topic knows it."""
    view = order_view(settings, order_id)
    found = order_events(settings, order_id, timeout_s)
    if view is None and not found["events"]:
        return None
    out = view or {
        "order_id": order_id,
        "status": None,
        "reason": None,
        "participants": {},
        "shipment": None,
    }
    out.update(found)
    return out
