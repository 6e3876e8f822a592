"""The envelope: round trips, and every way a message becomes a dead letter (no Kafka)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_schemas import ORDER, SAMPLES  # tests/unit is on sys.path (rootdir-less "prepend" import)

from schemas import codec
from schemas.codec import MAX_VALUE_BYTES, decode, encode
from schemas.errors import (
    DeadLetter,
    RuleViolationError,
    SchemaViolationError,
    UndecodableError,
    UnknownEventError,
    UnknownVersionError,
)
from schemas.events import EVENT_TYPES, OrderPlaced, Voted

PLACED = "OrderPlaced"


def order(**changes: Any) -> dict[str, Any]:
    body = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "items": [{"sku": "A", "quantity": 2, "unit_price_cents": 150}],
        "currency": "EUR",
        "total_cents": 300,
    }
    body.update(changes)
    return body


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(event):
    value, headers = encode(event)
    assert headers == [("type", event.TYPE.encode()), ("version", b"1")]
    assert decode(value, headers) == event


def test_encoding_is_compact_sorted_and_deterministic():
    value, _ = encode(ORDER)
    assert value == encode(OrderPlaced.from_dict(dict(reversed(ORDER.to_dict().items()))))[0]
    assert b" " not in value
    assert value.startswith(b'{"currency":"EUR","customer_id":')


def test_public_topic_needs_no_headers():
    assert decode(raw(order()), None, default_type=PLACED) == OrderPlaced.from_dict(order())
    assert decode(raw(order()), [("type", b"OrderPlaced")]).total_cents == 300
    assert decode(raw(order()), [], default_type=PLACED).order_id == "o-1"


def test_non_ascii_text_round_trips():
    vote = Voted("o", "inventory", "no", "épuisé ✓")
    assert decode(*encode(vote)) == vote


def test_last_repeated_header_wins():
    headers = [("type", b"Nope"), ("type", b"OrderPlaced"), ("version", b"1")]
    assert decode(raw(order()), headers).order_id == "o-1"


def test_str_headers_are_accepted():
    assert decode(raw(order()), [("type", "OrderPlaced"), ("version", "1")]).order_id == "o-1"


DEEP = b'{"order_id":' + b"[" * 40 + b"]" * 40 + b"}"
TOO_DEEP_FOR_PARSER = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
DEAD_LETTERS = [
    # (id, value, headers, default_type, error class, fragment of the detail)
    ("none", None, None, PLACED, UndecodableError, "tombstone"),
    ("empty", b"", None, PLACED, UndecodableError, "empty"),
    ("bad-utf8", b'{"order_id":"\xff"}', None, PLACED, UndecodableError, "not UTF-8"),
    ("bad-json", b'{"order_id":', None, PLACED, UndecodableError, "not JSON"),
    (
        "duplicate-key",
        b'{"order_id":"a","order_id":"b"}',
        None,
        PLACED,
        UndecodableError,
        "duplicate key 'order_id'",
    ),
    ("nan", raw(order()).replace(b"300", b"NaN"), None, PLACED, UndecodableError, "NaN"),
    (
        "infinity",
        raw(order()).replace(b"300", b"-Infinity"),
        None,
        PLACED,
        UndecodableError,
        "Infinity",
    ),
    ("top-level-array", b"[]", None, PLACED, UndecodableError, "array"),
    ("top-level-string", b'"x"', None, PLACED, UndecodableError, "string"),
    ("deep", DEEP, None, PLACED, UndecodableError, "deeper than 32"),
    ("deeper-than-parser", TOO_DEEP_FOR_PARSER, None, PLACED, UndecodableError, "deeper"),
    (
        "too-big",
        b'{"a":"' + b"x" * MAX_VALUE_BYTES + b'"}',
        None,
        PLACED,
        UndecodableError,
        "bytes, over",
    ),
    ("lone-surrogate", raw(order(currency="\ud800")), None, PLACED, UndecodableError, "surrogate"),
    ("no-type", raw(order()), None, None, UnknownEventError, "no type header"),
    (
        "unknown-type",
        raw(order()),
        [("type", b"OrderShipped")],
        None,
        UnknownEventError,
        "'OrderShipped'",
    ),
    ("type-not-utf8", raw(order()), [("type", b"\xff")], None, UnknownEventError, "UTF-8"),
    (
        "version-2",
        raw(order()),
        [("version", b"2")],
        PLACED,
        UnknownVersionError,
        "no schema version 2",
    ),
    (
        "version-x",
        raw(order()),
        [("version", b"x")],
        PLACED,
        UnknownVersionError,
        "not a positive decimal",
    ),
    ("version-0", raw(order()), [("version", b"0")], PLACED, UnknownVersionError, "positive"),
    ("version-01", raw(order()), [("version", b"01")], PLACED, UnknownVersionError, "positive"),
    (
        "float-money",
        raw(order(total_cents=300.0)),
        None,
        PLACED,
        SchemaViolationError,
        "total_cents must be integer",
    ),
    (
        "float-price",
        raw(order(items=[{"sku": "A", "quantity": 2, "unit_price_cents": 1.5}])),
        None,
        PLACED,
        SchemaViolationError,
        "items[0].unit_price_cents must be integer",
    ),
    (
        "exponent-int",
        raw(order()).replace(b"300", b"3e2"),
        None,
        PLACED,
        SchemaViolationError,
        "total_cents must be integer",
    ),
    (
        "bool-quantity",
        raw(order(items=[{"sku": "A", "quantity": True, "unit_price_cents": 1}], total_cents=1)),
        None,
        PLACED,
        SchemaViolationError,
        "items[0].quantity must be integer",
    ),
    (
        "missing-field",
        raw({k: v for k, v in order().items() if k != "currency"}),
        None,
        PLACED,
        SchemaViolationError,
        "currency",
    ),
    ("extra-field", raw(order(note="hi")), None, PLACED, SchemaViolationError, "note"),
    (
        "extra-line-field",
        raw(order(items=[{"sku": "A", "quantity": 2, "unit_price_cents": 150, "discount": 1}])),
        None,
        PLACED,
        SchemaViolationError,
        "discount",
    ),
    (
        "order-id-too-long",
        raw(order(order_id="a" * 65)),
        None,
        PLACED,
        SchemaViolationError,
        "order_id must match pattern",
    ),
    (
        "order-id-bad-chars",
        raw(order(order_id="a b")),
        None,
        PLACED,
        SchemaViolationError,
        "order_id must match pattern",
    ),
    (
        "order-id-newline",
        raw(order(order_id="ab\n")),
        None,
        PLACED,
        SchemaViolationError,
        "order_id must match pattern",
    ),
    ("order-id-empty", raw(order(order_id="")), None, PLACED, SchemaViolationError, "order_id"),
    (
        "no-items",
        raw(order(items=[], total_cents=0)),
        None,
        PLACED,
        SchemaViolationError,
        "items must contain at least 1",
    ),
    (
        "101-items",
        raw(
            order(items=[{"sku": "A", "quantity": 1, "unit_price_cents": 1}] * 101, total_cents=101)
        ),
        None,
        PLACED,
        SchemaViolationError,
        "items must contain less than or equal to 100",
    ),
    (
        "quantity-0",
        raw(order(items=[{"sku": "A", "quantity": 0, "unit_price_cents": 1}], total_cents=0)),
        None,
        PLACED,
        SchemaViolationError,
        "items[0].quantity must be >= 1",
    ),
    (
        "quantity-huge",
        raw(
            order(items=[{"sku": "A", "quantity": 1_000_001, "unit_price_cents": 0}], total_cents=0)
        ),
        None,
        PLACED,
        SchemaViolationError,
        "items[0].quantity must be <= 1000000",
    ),
    (
        "negative-price",
        raw(order(items=[{"sku": "A", "quantity": 1, "unit_price_cents": -1}], total_cents=0)),
        None,
        PLACED,
        SchemaViolationError,
        "unit_price_cents must be >= 0",
    ),
    (
        "lower-currency",
        raw(order(currency="eur")),
        None,
        PLACED,
        SchemaViolationError,
        "currency must match pattern",
    ),
    (
        "placed-at-garbage",
        raw(order(placed_at="yesterday")),
        None,
        PLACED,
        SchemaViolationError,
        "placed_at must be date-time",
    ),
    (
        "placed-at-no-zone",
        raw(order(placed_at="2024-05-01T12:00:00")),
        None,
        PLACED,
        SchemaViolationError,
        "placed_at",
    ),
    (
        "placed-at-feb-30",
        raw(order(placed_at="2024-02-30T12:00:00Z")),
        None,
        PLACED,
        SchemaViolationError,
        "placed_at",
    ),
    (
        "placed-at-date-only",
        raw(order(placed_at="2024-05-01")),
        None,
        PLACED,
        SchemaViolationError,
        "placed_at",
    ),
    ("placed-at-null", raw(order(placed_at=None)), None, PLACED, SchemaViolationError, "placed_at"),
    (
        "wrong-total",
        raw(order(total_cents=299)),
        None,
        PLACED,
        RuleViolationError,
        "total_cents is 299 but the items sum to 300",
    ),
    (
        "no-vote-without-reason",
        raw({"order_id": "o", "participant": "payment", "vote": "no", "reason": None}),
        [("type", b"Voted")],
        None,
        SchemaViolationError,
        "reason must be string",
    ),
    (
        "commit-with-reason",
        raw({"order_id": "o", "outcome": "commit", "reason": "x"}),
        [("type", b"Decided")],
        None,
        SchemaViolationError,
        "reason must be null",
    ),
    (
        "duplicate-participant",
        raw({"order_id": "o", "participants": ["payment", "payment"], "deadline_ms": 1}),
        [("type", b"TxBegun")],
        None,
        SchemaViolationError,
        "participants must contain unique",
    ),
    (
        "unknown-participant",
        raw({"order_id": "o", "participants": ["shipping"], "deadline_ms": 1}),
        [("type", b"TxBegun")],
        None,
        SchemaViolationError,
        "participants[0] must be one of",
    ),
    (
        "prepare-other-order",
        raw({"order_id": "o-2", "order": order(), "deadline_ms": 1}),
        [("type", b"Prepare")],
        None,
        RuleViolationError,
        "differs from order.order_id",
    ),
    (
        "prepare-wrong-total",
        raw({"order_id": "o-1", "order": order(total_cents=1), "deadline_ms": 1}),
        [("type", b"Prepare")],
        None,
        RuleViolationError,
        "order.total_cents is 1",
    ),
]


@pytest.mark.parametrize(
    "value, headers, default_type, error, fragment",
    [case[1:] for case in DEAD_LETTERS],
    ids=[case[0] for case in DEAD_LETTERS],
)
def test_dead_letters(value, headers, default_type, error, fragment):
    with pytest.raises(error) as caught:
        decode(value, headers, default_type)
    assert isinstance(caught.value, DeadLetter)
    assert fragment in caught.value.detail
    assert str(caught.value) == f"{caught.value.reason}: {caught.value.detail}"
    assert len(caught.value.detail) <= 300


def test_reason_codes():
    assert [
        c.reason
        for c in (
            UndecodableError,
            UnknownEventError,
            UnknownVersionError,
            SchemaViolationError,
            RuleViolationError,
        )
    ] == ["undecodable", "unknown_event", "unknown_version", "schema_violation", "rule_violation"]


def test_duplicate_skus_are_allowed():
    lines = [{"sku": "A", "quantity": 1, "unit_price_cents": 100}] * 2
    assert len(decode(raw(order(items=lines, total_cents=200)), None, PLACED).items) == 2


def test_extreme_but_valid_order():
    lines = [
        {"sku": f"S{i}", "quantity": 1_000_000, "unit_price_cents": 10_000_000_000}
        for i in range(100)
    ]
    total = 100 * 1_000_000 * 10_000_000_000
    assert decode(raw(order(items=lines, total_cents=total)), None, PLACED).total_cents == total


@pytest.mark.parametrize(
    "stamp",
    ["2024-05-01T12:00:00Z", "2024-05-01t12:00:00.123456789+05:30", "2024-12-31T23:59:59-00:00"],
)
def test_valid_placed_at(stamp):
    assert decode(raw(order(placed_at=stamp)), None, PLACED).placed_at == stamp


def test_upgrade_path(monkeypatch):
    # Pretend OrderPlaced is at v2 and v1 bodies need an upgrade: decode validates against the
    # v1 file, then runs the registered upgrader before building the (current) dataclass.
    monkeypatch.setattr(OrderPlaced, "VERSION", 2)
    with pytest.raises(UnknownVersionError, match="no upgrade from OrderPlaced v1 to v2"):
        decode(raw(order()), None, PLACED)
    monkeypatch.setitem(codec.UPGRADERS, (PLACED, 1), lambda body: {**body, "currency": "USD"})
    assert decode(raw(order()), None, PLACED).currency == "USD"


def test_newer_version_than_code_is_unknown(monkeypatch):
    monkeypatch.setattr(OrderPlaced, "VERSION", 0)
    with pytest.raises(UnknownVersionError, match="newer than this code"):
        decode(raw(order()), None, PLACED)


HEADERS = st.one_of(
    st.none(),
    st.lists(
        st.tuples(
            st.sampled_from(["type", "version", "other"]),
            st.one_of(
                st.none(),
                st.binary(max_size=12),
                st.sampled_from([t.encode() for t in EVENT_TYPES]),
                st.sampled_from([b"1", b"2", b"01"]),
            ),
        ),
        max_size=3,
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    value=st.one_of(st.none(), st.binary(max_size=200)),
    headers=HEADERS,
    default=st.one_of(st.none(), st.sampled_from(sorted(EVENT_TYPES))),
)
def test_arbitrary_bytes_decode_or_dead_letter(value, headers, default):
    try:
        assert type(decode(value, headers, default)).TYPE in EVENT_TYPES
    except DeadLetter:
        pass


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["inventory", "payment", "yes", "no", "commit", "abort", "EUR", "o-1"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "order_id",
                    "customer_id",
                    "items",
                    "sku",
                    "quantity",
                    "unit_price_cents",
                    "currency",
                    "total_cents",
                    "placed_at",
                    "participants",
                    "deadline_ms",
                    "order",
                    "reason",
                    "participant",
                    "vote",
                    "outcome",
                    "at_ms",
                    "status",
                    "x",
                ]
            ),
            inner,
            max_size=8,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(body=JSON, event_type=st.sampled_from(sorted(EVENT_TYPES)))
def test_arbitrary_json_decode_or_dead_letter(body, event_type):
    # Near-miss bodies reach the schema and rule paths that random bytes almost never do.
    try:
        event = decode(json.dumps(body).encode(), [("type", event_type.encode())])
    except DeadLetter:
        return
    assert decode(*encode(event)) == event
