"""A dead letter always fits: whatever a client managed to publish (the broker limits only the
compressed batch), its dead-letter copy stays under the workers' producer limit, librdkafka's
message.max.bytes of 1,000,000, checked on key + value + headers, with room to spare."""

from __future__ import annotations

import hashlib

import pytest
from confluent_kafka import Producer
from records import Msg

from topics.catalogue import (
    DLQ_HEADERS_DIGESTED_FROM,
    DLQ_HEADERS_SHA256,
    DLQ_KEY_DIGESTED_FROM,
    DLQ_REASON,
    DLQ_TRUNCATED_FROM,
)
from workers.runtime.messages import decode_batch
from workers.runtime.metrics import Metrics

LIMIT_WITH_ROOM = 980_000
HUGE_HEADERS = [(f"x-pad-{i}", b"p" * 20_000) for i in range(100)]
SHAPES = {
    "key": Msg(b"<" * 960_000, None, _key=b"k" * 98_000),
    "headers": Msg(b"not json", HUGE_HEADERS),
    "many small headers": Msg(b"<" * 960_000, [("h", b"")] * 200_000),
    "value": Msg(b"{" * (48 << 20), None),
    "all at once": Msg(b"{" * (48 << 20), HUGE_HEADERS, _key=b"k" * 98_000),
}


def produce(out, limit: int) -> None:
    """librdkafka's own size check, made when produce() is called: no broker is needed."""
    producer = Producer(
        {"bootstrap.servers": "127.0.0.1:1", "message.max.bytes": limit, "log_level": 0}
    )
    try:
        producer.produce(out.topic, key=out.key, value=out.value, headers=out.headers)
    finally:
        producer.purge()


def dead_letter(msg: Msg):
    events, (out,) = decode_batch(
        [msg], Metrics("intake"), 0, ("OrderPlaced",), "t.dlq", default_type="OrderPlaced"
    )
    assert not events
    return out


@pytest.mark.parametrize("msg", SHAPES.values(), ids=SHAPES.keys())
def test_every_dead_letter_fits_with_room_to_spare(msg):
    produce(dead_letter(msg), LIMIT_WITH_ROOM)


def test_what_does_not_fit_is_digested_with_its_size():
    out = dead_letter(SHAPES["all at once"])
    headers = dict(out.headers)
    assert out.key == hashlib.sha256(b"k" * 98_000).hexdigest().encode()
    assert headers[DLQ_KEY_DIGESTED_FROM] == b"98000"
    assert not any(name.startswith("x-pad-") for name, _ in out.headers)
    assert int(headers[DLQ_HEADERS_DIGESTED_FROM]) >= 2_000_000
    assert len(headers[DLQ_HEADERS_SHA256]) == 64
    assert headers[DLQ_TRUNCATED_FROM] == str(48 << 20).encode()
    assert out.value == b"{" * len(out.value) and headers[DLQ_REASON] == b"undecodable"


def test_what_fits_is_kept_whole():
    msg = Msg(b"{", [("trace", b"t" * 1_000)] * 10, _key=b"k" * 1_000)
    out = dead_letter(msg)
    assert (out.key, out.value) == (msg.key(), msg.value())
    assert out.headers[:10] == msg.headers()
    assert not {DLQ_KEY_DIGESTED_FROM, DLQ_HEADERS_DIGESTED_FROM, DLQ_TRUNCATED_FROM} & {
        name for name, _ in out.headers
    }
