"""OrderPublisher refuses a bad order before producing anything. The producer points at a port
nothing listens on and gives up on a message after 300 ms: a message that got past validation
would come back as a failed delivery (the good-order test shows that it does)."""

from __future__ import annotations

import json

import pytest

from schemas.codec import MAX_VALUE_BYTES
from schemas.errors import DeadLetter, RuleViolationError, SchemaViolationError, UndecodableError
from topics.producer import OrderPublisher

NOWHERE = {"bootstrap.servers": "127.0.0.1:1", "log_level": 0, "message.timeout.ms": 300}


def order(**changes):
    body = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "currency": "EUR",
        "total_cents": 300,
        "items": [{"sku": "A", "quantity": 2, "unit_price_cents": 150}],
    }
    body.update(changes)
    return body


@pytest.fixture
def publisher():
    pub = OrderPublisher(NOWHERE, topic="never.sent")
    yield pub
    pub.flush(0)


@pytest.mark.parametrize(
    "bad, error",
    [
        (order(total_cents=301), RuleViolationError),
        (
            order(items=[{"sku": "A", "quantity": 0, "unit_price_cents": 150}], total_cents=0),
            SchemaViolationError,
        ),
        ({k: v for k, v in order().items() if k != "currency"}, SchemaViolationError),
        (order(total_cents=300.0), SchemaViolationError),  # money never as a float
        (order(extra=1), SchemaViolationError),
        (order(order_id={1, 2}), UndecodableError),  # not JSON at all
    ],
)
def test_bad_order_raises_its_dead_letter_and_sends_nothing(publisher, bad, error):
    with pytest.raises(error) as caught:
        publisher.publish(bad)
    assert isinstance(caught.value, DeadLetter) and caught.value.detail
    assert_nothing_produced(publisher)


def assert_nothing_produced(publisher):
    assert publisher.flush(5) == 0
    assert (publisher.sent, publisher.delivered, publisher.failed) == (0, 0, 0)


def test_good_order_is_produced_and_seen_failing(publisher):
    publisher.publish(order())
    assert publisher.flush(5) == 0
    assert (publisher.sent, publisher.failed) == (1, 1)


def test_oversize_is_a_value_error_naming_size_and_limit(publisher):
    huge = order(customer_id="c-1", placed_at="x" * (MAX_VALUE_BYTES + 10))
    with pytest.raises(ValueError, match=str(MAX_VALUE_BYTES)) as caught:
        publisher.publish(huge)
    assert not isinstance(caught.value, DeadLetter)
    with pytest.raises(ValueError, match=str(MAX_VALUE_BYTES)):
        publisher.publish_raw(None, b"x" * (MAX_VALUE_BYTES + 1))
    assert_nothing_produced(publisher)


def test_encode_gives_key_value_headers_a_worker_accepts():
    value, headers, event = OrderPublisher.encode(order())
    assert dict(headers) == {"type": b"OrderPlaced", "version": b"1"}
    assert event.order_id == "o-1" and b'"total_cents":300' in value


def test_a_line_too_large_is_a_dead_letter_as_any_bad_line(publisher):
    """`orders publish` counts and reports a bad line and goes on: an oversize one too."""
    line = b'{"order_id": "o-1", "pad": "' + b"x" * MAX_VALUE_BYTES + b'"}'
    with pytest.raises(UndecodableError):
        publisher.publish_line(line)
    assert_nothing_produced(publisher)


def test_a_good_line_is_sent_in_its_canonical_form(publisher):
    publisher.publish_line(json.dumps(order(), indent=2).encode())
    assert publisher.sent == 1
