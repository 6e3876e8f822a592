"""From Kafka messages to events and back: decode or dead-letter, encode keyed by order id."""

from __future__ import annotations

import hashlib
import logging
from typing import Callable, Iterable, TypeVar

from confluent_kafka import Message

from schemas import codec
from schemas.errors import DeadLetter, UnknownEventError
from schemas.events import Event
from topics.catalogue import (
    DLQ_AT_MS,
    DLQ_DETAIL,
    DLQ_HEADERS_DIGESTED_FROM,
    DLQ_HEADERS_SHA256,
    DLQ_KEY_DIGESTED_FROM,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TOPIC,
    DLQ_TRUNCATED_FROM,
    DLQ_WORKER,
)
from topics.read import coordinates, headers_of
from workers.runtime.handler import Headers, Out
from workers.runtime.metrics import Metrics
from workers.runtime.signing import encoded_headers

log = logging.getLogger(__name__)
E = TypeVar("E")
# A worker's producer refuses a record whose key, value and headers (plus ~40 bytes of framing)
# exceed librdkafka's message.max.bytes, 1,000,000; the broker limits only the compressed batch,
# so a client may publish far more. A dead letter must always fit, or the producer refuses it,
# the worker ends and reads the batch again for ever: each part of the original is bounded, and
# with the worker's own headers (under 2 kB) the whole stays some 30 kB under the limit.
MAX_DEAD_KEY = 1_024  # a longer key is replaced by its sha256
MAX_DEAD_HEADERS = 16_384  # longer headers are dropped for their sha256
MAX_DEAD_VALUE = 950_000  # a longer value is truncated


def emit(topic: str, event: Event, count: Callable[[], None] | None = None) -> Out:
    value, headers = codec.encode(event)
    return Out(topic, event.order_id.encode(), value, list(headers), count=count)


def routed(dest: dict[str, str], outputs: Iterable[tuple[str, E]]) -> list[tuple[str, E]]:
    """(topic, event) of each (destination, event), each once: destinations that share a topic
    (the participants share the commands topic) get one record of an event meant for several."""
    out: dict[tuple[str, E], None] = {}
    for d, event in outputs:
        out.setdefault((dest[d], event), None)
    return list(out)


def dead_letter(
    msg: Message, error: DeadLetter, metrics: Metrics, now_ms: int, dlq_topic: str
) -> Out:
    # one line per bad message (they are rare), so the log shows each dead letter beside what
    # the worker did around it
    topic, partition, offset = coordinates(msg)
    log.info("dead letter %s[%d]@%d: %s", topic, partition, offset, error.reason)
    key, headers, value = _fitted(msg.key(), list(headers_of(msg) or []), msg.value())
    headers += [
        (DLQ_REASON, error.reason.encode()),
        (DLQ_DETAIL, str(error.detail).encode()[:1000]),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
        (DLQ_WORKER, metrics.worker.encode()),
        (DLQ_AT_MS, str(now_ms).encode()),
    ]
    return Out(
        dlq_topic,
        key,
        value,
        headers,
        count=metrics.dead_letters.labels(metrics.worker, error.reason).inc,
    )


def _fitted(
    key: bytes | None, headers: Headers, value: bytes | None
) -> tuple[bytes | None, Headers, bytes | None]:
    """The original's key, headers and value, each within its bound; what was cut is noted, with
    its full size, after the headers kept."""
    notes: Headers = []
    if key is not None and len(key) > MAX_DEAD_KEY:
        notes.append((DLQ_KEY_DIGESTED_FROM, str(len(key)).encode()))
        key = hashlib.sha256(key).hexdigest().encode()
    encoded = encoded_headers(headers)
    if len(encoded) > MAX_DEAD_HEADERS:
        notes += [
            (DLQ_HEADERS_DIGESTED_FROM, str(len(encoded)).encode()),
            (DLQ_HEADERS_SHA256, hashlib.sha256(encoded).hexdigest().encode()),
        ]
        headers = []
    if value is not None and len(value) > MAX_DEAD_VALUE:
        notes.append((DLQ_TRUNCATED_FROM, str(len(value)).encode()))
        value = value[:MAX_DEAD_VALUE]
    return key, headers + notes, value


def decode_batch(
    messages: list[Message],
    metrics: Metrics,
    now_ms: int,
    accepts: tuple[str, ...],
    dlq_topic: str,
    default_type: str | None = None,
    check: Callable[[Message, Event], None] | None = None,
) -> tuple[list[tuple[Message, Event]], list[Out]]:
    """Decode every message; one that can never succeed (or carries an event this worker does
    not take, or fails `check`) becomes a dead letter, and the rest of the partition keeps
    flowing."""
    events: list[tuple[Message, Event]] = []
    dead: list[Out] = []
    for msg in messages:
        try:
            event = codec.decode(msg.value(), headers_of(msg), default_type=default_type)
            if event.TYPE not in accepts:
                raise UnknownEventError(f"{event.TYPE} does not belong on {msg.topic()}")
            if check is not None:
                check(msg, event)
            events.append((msg, event))
        except DeadLetter as e:
            dead.append(dead_letter(msg, e, metrics, now_ms, dlq_topic))
    return events, dead
