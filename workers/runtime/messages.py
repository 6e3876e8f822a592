"""From Kafka messages to events and back: decode or dead-letter, encode keyed by order id."""
from __future__ import annotations

import logging

from confluent_kafka import Message

from schemas import codec
from schemas.errors import DeadLetter, UnknownEventError
from workers.runtime.loop import Out

log = logging.getLogger(__name__)
REASON = "dlq.reason"      # dead-letter header names, read back by the replay tools
# The producer's message limit is 1,000,000 bytes (librdkafka's message.max.bytes); a dead letter
# must always fit, so a larger original is kept truncated, with its full size in a header (the
# reason still says what was wrong with it); the rest of the limit is left for key and headers
MAX_DEAD_VALUE = 950_000


def emit(topic: str, event) -> Out:
    value, headers = codec.encode(event)
    return Out(topic, event.order_id.encode(), value, headers)


def dead_letter(msg: Message, error: DeadLetter, worker: str, now_ms: int, dlq_topic: str) -> Out:
    # one line per bad message (they are rare): with the transaction warnings beside it, the log
    # shows whether a dead letter was written in a transaction that then committed
    log.info("dead letter %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), error.reason)
    headers = list(msg.headers() or [])
    value = msg.value()
    if value is not None and len(value) > MAX_DEAD_VALUE:
        headers.append(("dlq.truncated_from", str(len(value)).encode()))
        value = value[:MAX_DEAD_VALUE]
    headers += [(REASON, error.reason.encode()), ("dlq.detail", str(error.detail).encode()[:1000]),
                ("dlq.topic", msg.topic().encode()), ("dlq.partition", str(msg.partition()).encode()),
                ("dlq.offset", str(msg.offset()).encode()), ("dlq.worker", worker.encode()),
                ("dlq.at_ms", str(now_ms).encode())]
    return Out(dlq_topic, msg.key(), value, headers)


def decode_batch(messages: list[Message], metrics, now_ms: int, accepts: tuple[str, ...],
                 dlq_topic: str, default_type: str | None = None):
    """Decode every message; one that can never succeed (or carries an event this worker does
    not take) becomes a dead letter, and the rest of the partition keeps flowing."""
    events, dead = [], []
    for msg in messages:
        try:
            event = codec.decode(msg.value(), msg.headers(), default_type=default_type)
            if event.TYPE not in accepts:
                raise UnknownEventError(f"{event.TYPE} does not belong on {msg.topic()}")
            events.append((msg, event))
        except DeadLetter as e:
            metrics.dead_letters.labels(metrics.worker, e.reason).inc()
            dead.append(dead_letter(msg, e, metrics.worker, now_ms, dlq_topic))
    return events, dead
