"""Hostile input at the intake edge (no Kafka): every generated or mutated order is either a valid
order or a dead letter with a known reason, never any other exception.

Each property builds valid orders and breaks one thing at a time (a field's value or type, the
JSON text, the bytes, the headers); whatever the codec accepts must satisfy every input rule, go
through intake's pure core, and survive the encode/decode round trip byte for byte.

Profiles (registered here, applied only to this module's tests):
    default     ~200 examples per property (CI)
    long        10,000 examples per property:
                HYPOTHESIS_PROFILE=long python -m pytest tests/unit/test_hostile_input.py -q
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from records import Msg

from schemas import codec
from schemas.errors import (
    DeadLetter,
    RuleViolationError,
    UndecodableError,
)
from schemas.events import Commit, OrderPlaced, Prepare, StatusChanged, TxBegun
from topics.catalogue import DLQ_DETAIL, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from workers.intake.core import Seen, begin, classify
from workers.runtime.messages import decode_batch
from workers.runtime.metrics import Metrics

# no example database and no explain phase (it writes .patch files): this module writes no files
_QUIET = dict(
    deadline=None,
    database=None,
    phases=[p for p in Phase if p is not Phase.explain],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
settings.register_profile("hostile-default", max_examples=200, **_QUIET)
settings.register_profile("hostile-long", max_examples=10_000, **_QUIET)
# the profile is applied per test (not load_profile) so other modules keep their own settings
PROFILE = settings.get_profile(
    "hostile-long" if os.environ.get("HYPOTHESIS_PROFILE") == "long" else "hostile-default"
)

PLACED = "OrderPlaced"
REASONS = {"undecodable", "unknown_event", "unknown_version", "schema_violation", "rule_violation"}
BIGINT = 2**63  # PostgreSQL bigint: orders.total_cents, holds' amounts
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SKU = re.compile(r"[A-Za-z0-9_.-]{1,64}")
CURRENCY = re.compile(r"[A-Z]{3}")


# -- valid orders -----------------------------------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
skus = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
lines = st.fixed_dictionaries(
    {
        "sku": skus,
        "quantity": st.integers(1, 1_000_000),
        "unit_price_cents": st.integers(0, 10_000_000_000),
    }
)
stamps = st.builds(
    lambda at, offset_min, upper: _rfc3339(at, offset_min, upper),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9998, 12, 31)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
    st.booleans(),
)


def _rfc3339(at: datetime, offset_min: int, upper: bool) -> str:
    text = at.replace(tzinfo=timezone(timedelta(minutes=offset_min))).isoformat()
    text = text.replace("+00:00", "Z") if offset_min == 0 else text
    return text if upper else text.lower()


@st.composite
def valid_orders(draw) -> dict[str, Any]:
    items = draw(st.lists(lines, min_size=1, max_size=100))
    body = {
        "order_id": draw(ids),
        "customer_id": draw(ids),
        "items": items,
        "currency": draw(st.from_regex(r"[A-Z]{3}", fullmatch=True)),
        "total_cents": sum(i["quantity"] * i["unit_price_cents"] for i in items),
    }
    if draw(st.booleans()):
        body["placed_at"] = draw(stamps)
    return body


# -- hostile values ---------------------------------------------------------------------------

SQL_AND_SHELL = [
    "x'); DROP TABLE orders;--",
    "' OR '1'='1",
    "1; SELECT pg_sleep(10)",
    "a--b",
    "o--1",
    "$(rm -rf /)",
    "`id`",
    "a|b&c;d",
    "%s",
    "%(x)s",
    "\\x00",
    "';\\",
    '"',
    "$$",
    "E'\\x41'",
    "\x00",
    "a\x00b",
    "\r\n",
    "\u202e",
    "\ufeff",
    "\U0001f4a9",
    "ｏ－１",
    "a\u0660",
    "EUR\n",
    "..",
    "../../etc/passwd",
    "{{7*7}}",
    "${jndi:ldap://x}",
]
ints = st.one_of(
    st.integers(),
    st.sampled_from(
        [
            0,
            -1,
            1,
            2**31,
            2**53 + 1,
            2**63 - 1,
            2**63,
            2**64,
            -(2**63) - 1,
            10**18,
            10**19,
            10**30,
            10**4000,
            -(10**4000),
            1_000_001,
            10_000_000_001,
        ]
    ),
)
strings = st.one_of(
    st.text(),  # any unicode, controls included
    st.text(st.characters(codec="ascii"), max_size=80),
    st.sampled_from(SQL_AND_SHELL),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["a", "é", "-", "\x00"]),
        st.sampled_from([65, 1000, 100_000]),
    ),  # very long
    st.sampled_from(["\ud800", "a\udfffb", "\udbff\udc00"[::-1]]),  # lone surrogates
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    strings,
    st.floats(),  # NaN, ±Infinity, -0.0, 1e308
    st.sampled_from([0.0, 1.0, 1.5, 300.0, 1e300, -0.0]),
)


def _nest(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


hostile_values = st.one_of(
    leaves,
    st.lists(leaves, max_size=3),
    st.dictionaries(st.text(max_size=5), leaves, max_size=3),
    st.builds(_nest, st.integers(1, 80), st.sampled_from(["list", "dict"])),
    st.just([]),
    st.just({}),
)


@st.composite
def field_mutations(draw) -> dict[str, Any]:
    """A valid order with exactly one field replaced, removed, or one field added."""
    body = draw(valid_orders())
    where = draw(st.sampled_from(["top", "line", "items"]))
    if where == "items":
        body["items"] = draw(
            st.sampled_from(
                [
                    [],
                    body["items"][:1] * 101,
                    "not a list",
                    {"0": body["items"][0]},
                    [body["items"][0], None],
                    [body["items"][0], []],
                ]
            )
        )
        return body
    target = body if where == "top" else body["items"][draw(st.integers(0, len(body["items"]) - 1))]
    action = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add"]))
    if action == "add":
        target[draw(st.text(max_size=10))] = draw(hostile_values)
    else:
        name = draw(st.sampled_from(sorted(target)))
        if action == "remove":
            del target[name]
        else:
            target[name] = draw(hostile_values)
    return body


def dumps(body: Any, ascii_only: bool) -> bytes:
    # json.dumps writes NaN/Infinity literals (allow_nan); ensure_ascii=False with a lone
    # surrogate gives bytes that are not UTF-8 (CESU), which is hostile too.
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


NUMBER_LITERALS = [
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1E+2",
    "3e2",
    "300.0",
    "300.5",
    "-0",
    "-0.0",
    "0x10",
    "+1",
    "01",
    "1_000",
    ".5",
    "5.",
    "1e",
    "9" * 20,
    "9" * 4299,
    "9" * 4301,
    "1" + "0" * 19,
    "-" + "9" * 19,
]
# beyond libmpdec's exponent range: decimal.Decimal raises InvalidOperation (see the test
# test_float_literal_beyond_decimal_range_is_a_dead_letter below)
HUGE_EXPONENTS = [
    "1e999999999999999999999",
    "1.0e-999999999999999999999",
    "-2E+1000000000000000000",
]


@st.composite
def text_mutations(draw) -> bytes:
    """A valid order's JSON text broken the ways a hand-rolled producer breaks it."""
    body = draw(valid_orders())
    text = json.dumps(body, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    kind = draw(st.sampled_from(["truncate", "duplicate", "number", "control", "wrap", "garbage"]))
    if kind == "truncate":
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif kind == "duplicate":
        key = draw(st.sampled_from(sorted(body)))
        text = "{" + json.dumps(key) + ":" + json.dumps(draw(leaves)) + "," + text[1:]
    elif kind == "number":
        spots = [m.span() for m in re.finditer(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text)]
        start, end = draw(st.sampled_from(spots))
        text = text[:start] + draw(st.sampled_from(NUMBER_LITERALS)) + text[end:]
    elif kind == "control":  # a raw (unescaped) control character inside a string
        spots = [m.start() + 1 for m in re.finditer(r'"', text)]
        at = draw(st.sampled_from(spots))
        text = text[:at] + chr(draw(st.integers(0, 31))) + text[at:]
    elif kind == "wrap":
        text = draw(
            st.sampled_from(
                ["[{}]", "\ufeff{}", "{}\n{}", " {} ", "{}//x", "{}\x00", '"{}"', "{{}}"]
            )
        ).replace("{}", text, 1)
    else:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=4)) + text[at:]
    return text.encode("utf-8", "surrogatepass")


@st.composite
def byte_mutations(draw) -> bytes:
    """A valid order's bytes with a few bytes flipped, inserted or deleted."""
    value = bytearray(codec.encode(OrderPlaced.from_dict(draw(valid_orders())))[0])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(value) - 1))
        how = draw(st.sampled_from(["flip", "insert", "delete"]))
        if how == "flip":
            value[at] = draw(st.integers(0, 255))
        elif how == "insert":
            value[at:at] = draw(
                st.sampled_from(
                    [
                        b"\xff",
                        b"\xc0\xaf",
                        b"\xed\xa0\x80",
                        b"\x80",
                        b"\xf4\x90\x80\x80",
                        b"\x00",
                        b"\\",
                    ]
                )
            )
        else:
            del value[at]
    return bytes(value)


bodies = st.one_of(
    st.builds(dumps, valid_orders(), st.booleans()),
    st.builds(dumps, field_mutations(), st.booleans()),
    text_mutations(),
    byte_mutations(),
    st.binary(max_size=300),
)

# headers are data, not authority: every name a reader might trust, with forged values
HEADER_NAMES = [
    "type",
    "version",
    DLQ_REASON,
    DLQ_TOPIC,
    DLQ_PARTITION,
    DLQ_OFFSET,
    "replay.count",
    "x",
]
TYPES = [
    b"OrderPlaced",
    b"Commit",
    b"Abort",
    b"Prepare",
    b"TxBegun",
    b"StatusChanged",
    b"Voted",
    b"orderplaced",
    b"OrderPlaced\x00",
    b"\xff",
    b"",
]
forged_headers = st.one_of(
    st.none(),
    st.lists(
        st.tuples(
            st.sampled_from(HEADER_NAMES),
            st.one_of(
                st.none(),
                st.sampled_from(TYPES),
                st.sampled_from([b"1", b"2", b"0", b"01", b"1 ", b"-1", b"99999999999", b"1e0"]),
                st.binary(max_size=12),
            ),
        ),
        max_size=4,
    ),
)


# -- the properties ---------------------------------------------------------------------------


def decode_or_dead_letter(value: bytes | None, headers=None) -> OrderPlaced | None:
    """The order the codec accepts, or None for a dead letter; any other exception fails."""
    try:
        event = codec.decode(value, headers, default_type=PLACED)
    except DeadLetter as e:
        assert e.reason in REASONS and e.detail, repr(e)
        return None
    assert isinstance(event, OrderPlaced)
    assert_meets_input_rules(event)
    return event


def assert_meets_input_rules(order: OrderPlaced) -> None:
    assert ID.fullmatch(order.order_id) and ID.fullmatch(order.customer_id)
    assert CURRENCY.fullmatch(order.currency)
    assert 1 <= len(order.items) <= 100
    total = 0
    for line in order.items:
        assert SKU.fullmatch(line.sku)
        assert type(line.quantity) is int and type(line.unit_price_cents) is int  # no bool/float
        assert 1 <= line.quantity <= 1_000_000 and 0 <= line.unit_price_cents <= 10_000_000_000
        assert line.quantity * line.unit_price_cents < BIGINT
        total += line.quantity * line.unit_price_cents
    assert type(order.total_cents) is int and order.total_cents == total < BIGINT
    if order.placed_at is not None:
        assert len(order.placed_at) <= 64
        assert datetime.fromisoformat(order.placed_at.upper().replace("Z", "+00:00")).tzinfo


def assert_intake_can_emit(order: OrderPlaced) -> None:
    """What intake does with an accepted order: classify, begin, encode; all must decode again."""
    digest = order.content_hash()
    assert classify(None, digest, 3, 7) == "new"
    assert classify(Seen(digest, 3, 7), digest, 3, 7) == "redelivery"
    assert classify(Seen(digest, 3, 7), digest, 4, 7) == "duplicate"
    assert classify(Seen("other", 3, 7), digest, 3, 7) == "conflict"
    now = 1_700_000_000_000
    outputs = begin(order, now, 10_000)
    assert [d for d, _ in outputs] == ["tx.log", "inventory", "payment"]
    for event in (order, *(e for _, e in outputs)):
        value, headers = codec.encode(event)
        again = codec.decode(value, headers)  # no default type: the headers must say it
        assert again == event
        assert codec.encode(again) == (value, headers)  # byte-identical re-encode
    assert isinstance(outputs[0][1], TxBegun) and isinstance(outputs[1][1], Prepare)
    # the row intake stores: the body as JSON, total in a bigint
    assert json.loads(json.dumps(order.to_dict())) == order.to_dict()


@PROFILE
@given(valid_orders(), st.booleans())
def test_valid_orders_are_accepted_and_round_trip(body, ascii_only):
    order = decode_or_dead_letter(dumps(body, ascii_only))
    assert order is not None and order.to_dict() == body
    assert_intake_can_emit(order)


@PROFILE
@given(field_mutations(), st.booleans())
def test_one_field_mutated_is_an_order_or_a_dead_letter(body, ascii_only):
    order = decode_or_dead_letter(dumps(body, ascii_only))
    if order is not None:
        assert order.to_dict() == body  # accepted as sent, nothing coerced
        assert_intake_can_emit(order)


@PROFILE
@given(text_mutations())
def test_broken_json_text_is_an_order_or_a_dead_letter(value):
    order = decode_or_dead_letter(value)
    if order is not None:
        assert_intake_can_emit(order)


@PROFILE
@given(st.one_of(byte_mutations(), st.binary(max_size=300)))
def test_byte_fuzz_is_an_order_or_a_dead_letter(value):
    order = decode_or_dead_letter(value)
    if order is not None:
        assert_intake_can_emit(order)


@PROFILE
@given(
    valid_orders(),
    st.sampled_from(HUGE_EXPONENTS + NUMBER_LITERALS),
    st.sampled_from(["total_cents", "quantity", "unit_price_cents"]),
)
def test_any_number_literal_in_a_money_field_is_an_order_or_a_dead_letter(body, literal, field):
    # includes exponents beyond Decimal's range (1e999999999999999999999), which once raised
    # decimal.InvalidOperation out of the codec and crash-looped intake
    marker = "__LITERAL__"
    if field == "total_cents":
        body["total_cents"] = marker
    else:
        body["items"][0][field] = marker
    value = json.dumps(body).replace(f'"{marker}"', literal).encode()
    order = decode_or_dead_letter(value)
    if order is not None:
        assert_intake_can_emit(order)


def test_float_literal_beyond_decimal_range_is_a_dead_letter():
    # json.loads(parse_float=Decimal) raises decimal.InvalidOperation here, not a ValueError
    value = (
        b'{"order_id":"o-1","customer_id":"c-1","currency":"EUR","total_cents":'
        b'1e999999999999999999999,"items":[{"sku":"A","quantity":1,"unit_price_cents":1}]}'
    )
    with pytest.raises(UndecodableError):
        codec.decode(value, None, default_type=PLACED)


@pytest.mark.parametrize(
    "quantity, price",
    [
        (1_000_000, 10_000_000_000),  # the largest line the schema allows: fits
        (2**63, 1),
        (1, 2**63),
        (2**62, 2),
        (-(2**63), -1),
        (10**4000, 0),
        (3, -(2**63)),
    ],
)
def test_amounts_beyond_bigint_never_pass(quantity, price):
    line = {"sku": "A", "quantity": quantity, "unit_price_cents": price}
    value = json.dumps(
        {
            "order_id": "o-1",
            "customer_id": "c-1",
            "currency": "EUR",
            "total_cents": 100 * quantity * price,
            "items": [line] * 100,
        }
    ).encode()
    order = decode_or_dead_letter(value)
    if (quantity, price) == (1_000_000, 10_000_000_000):
        assert order is not None and order.total_cents == 10**18 < BIGINT
    else:
        assert order is None


def test_rule_violation_detail_stays_short():
    # FOUND ISSUE (minor), left failing on purpose for the lead: a 4,000-digit total is a rule
    # violation whose detail quotes the whole number (4,039 characters); dead_letter() cuts the
    # header at 1,000 bytes, but the codec caps its other details at 300 (_MAX_DETAIL).
    value = json.dumps(
        {
            "order_id": "o-1",
            "customer_id": "c-1",
            "currency": "EUR",
            "total_cents": 10**4000,
            "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 1}],
        }
    ).encode()
    with pytest.raises(RuleViolationError) as caught:
        codec.decode(value, None, default_type=PLACED)
    assert len(caught.value.detail) <= 300, len(caught.value.detail)


# -- headers are data, not authority: intake's decode_batch ------------------------------------


def intake_decode(msg: Msg):
    metrics = Metrics("intake")
    events, dead = decode_batch(
        [msg], metrics, 1_700_000_000_000, ("OrderPlaced",), "t.dlq", default_type=PLACED
    )
    assert len(events) + len(dead) == 1
    return events, dead


# valid bodies of the other event types, so a forged type header finds something to decode
OTHER_EVENTS = [
    Commit("o-1"),
    TxBegun("o-1", ("inventory", "payment"), 5),
    StatusChanged("o-1", "CONFIRMED", None, 5),
]


@PROFILE
@given(
    st.one_of(bodies, st.sampled_from([codec.encode(e)[0] for e in OTHER_EVENTS])), forged_headers
)
def test_forged_headers_cannot_make_an_invalid_body_pass(value, headers):
    events, dead = intake_decode(Msg(value, headers))
    if events:
        # accepted only if the body is a valid order on its own, read as the topic's default type
        ((_, order),) = events
        assert isinstance(order, OrderPlaced)
        assert decode_or_dead_letter(value) == order
        assert_intake_can_emit(order)
    else:
        (out,) = dead
        assert (out.topic, out.key, out.value) == ("t.dlq", b"k", value)  # original bytes
        found = dict(out.headers)  # last wins: the worker's own dlq.* come after any forged ones
        assert found[DLQ_REASON].decode() in REASONS and found[DLQ_DETAIL]
        assert (found[DLQ_TOPIC], found[DLQ_PARTITION], found[DLQ_OFFSET]) == (
            b"t.orders.placed.v1",
            b"2",
            b"41",
        )
        assert out.headers[: len(headers or [])] == list(headers or [])


@pytest.mark.parametrize(
    "event",
    [
        *OTHER_EVENTS,
        Prepare(
            "o-1",
            OrderPlaced.from_dict(
                {
                    "order_id": "o-1",
                    "customer_id": "c",
                    "currency": "EUR",
                    "total_cents": 1,
                    "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 1}],
                }
            ),
            5,
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_event_types_on_the_orders_topic_are_dead_letters(event):
    value, headers = codec.encode(event)
    events, dead = intake_decode(Msg(value, headers))
    assert not events
    assert dict(dead[0].headers)[DLQ_REASON] == b"unknown_event"


def test_forged_dead_letter_headers_do_not_decide_the_reason():
    valid = json.dumps(
        {
            "order_id": "o-1",
            "customer_id": "c-1",
            "currency": "EUR",
            "total_cents": 1,
            "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 1}],
        }
    ).encode()
    forged = [(DLQ_REASON, b"rule_violation"), ("replay.count", b"99"), ("type", b"OrderPlaced")]
    events, dead = intake_decode(Msg(valid, forged))
    assert len(events) == 1 and not dead  # a valid order is an order whatever dlq.* says
    events, dead = intake_decode(Msg(b"{", forged))
    assert dict(dead[0].headers)[DLQ_REASON] == b"undecodable"
