"""Hostile input against the running pipeline: a few hundred malformed, oversized, forged and
injection-laden payloads interleaved with valid orders on the same partitions. Every message is
either an order that reaches a final status or a dead letter with its reason; nothing is lost, no
worker restarts, and SQL metacharacters that are accepted are stored verbatim.

The payloads come from ``random.Random(SEED)`` over a list of mutators, so a failure replays
exactly; the property-based search over the same space is tests/unit/test_hostile_input.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from pipeline import Pipeline, order

from schemas import codec
from schemas.errors import DeadLetter
from schemas.events import Abort, Commit
from topics.catalogue import (
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
    ORDERS_DLQ,
)

pytestmark = pytest.mark.integration

SEED = 20_240_501
N_HOSTILE = 300
N_VALID = 60
KEYS = [f"hk-{i}".encode() for i in range(8)]  # few keys: hostile and valid share partitions
SKUS = {"hx-a": 1_000, "hx-b": 1_000}
CUSTOMERS = {f"hx-c{i}": 1_000_000 for i in range(5)}
ACCEPTED = "accepted"


def base(i: int) -> dict:
    return order(f"h{i}", f"hx-c{i % 5}", ("hx-a", 1 + i % 3, 100), ("hx-b", 1, 250))


def dumps(body) -> bytes:
    return json.dumps(body).encode()


def _set_field(rng, body, value) -> dict:
    if rng.random() < 0.5:
        body[rng.choice(sorted(body))] = value
    else:
        body["items"][0][rng.choice(["sku", "quantity", "unit_price_cents"])] = value
    return body


# Each mutator: (rng, i) -> (value, headers, reasons it may end in: dead-letter reasons or
# ACCEPTED). Every accepted one keeps a unique order id, so no two can conflict.
def wrong_type(rng, i):
    value = rng.choice([None, True, False, 1.5, [], {}, [1], {"a": 1}])
    return dumps(_set_field(rng, base(i), value)), None, {"schema_violation"}


def huge_number(rng, i):
    body = base(i)
    field = rng.choice(["quantity", "unit_price_cents", "total_cents"])
    value = rng.choice([2**63, 2**64, 10**30, -(2**63) - 1, 10**4000, 10_000_000_001, 1_000_001])
    if field == "total_cents":
        body["total_cents"] = value
        return dumps(body), None, {"rule_violation", "schema_violation"}  # < 0: schema
    body["items"][0][field] = value
    return dumps(body), None, {"schema_violation"}


def nonpositive(rng, i):
    body = base(i)
    line = body["items"][0]
    field, value = rng.choice(
        [
            ("quantity", 0),
            ("quantity", -1),
            ("unit_price_cents", -1),
            ("total_cents", -1),
            ("quantity", -(2**63)),
        ]
    )
    (body if field == "total_cents" else line)[field] = value
    return dumps(body), None, {"schema_violation"}


def float_money(rng, i):
    body = base(i)
    body["total_cents"] = float(body["total_cents"])
    if rng.random() < 0.5:
        body["items"][0]["unit_price_cents"] = 99.5
    return dumps(body), None, {"schema_violation"}


def nan_infinity(rng, i):
    text = dumps(base(i)).decode()
    literal = rng.choice(["NaN", "Infinity", "-Infinity"])
    return (
        text.replace('"total_cents": ', f'"total_cents": {literal}, "x": ', 1).encode(),
        None,
        {"undecodable"},
    )


def deep_nesting(rng, i):
    n = rng.randint(33, 5000)  # written by hand: json.dumps itself would hit the recursion limit
    text = dumps(_set_field(rng, base(i), "__DEEP__")).decode()
    return text.replace('"__DEEP__"', "[" * n + "1" + "]" * n).encode(), None, {"undecodable"}


def shallow_nesting(rng, i):
    value = 1
    for _ in range(rng.randint(1, 20)):
        value = {"a": value}
    return dumps(_set_field(rng, base(i), value)), None, {"schema_violation"}


HOSTILE_TEXT = [
    "x'); DROP TABLE orders;--",
    "' OR '1'='1",
    "1; SELECT pg_sleep(30)",
    "$(reboot)",
    "`id`",
    "a|b&c",
    "%s%s%s",
    "%(x)s",
    "\x00",
    "a\x00b",
    "\r\n",
    "\u202e",
    "\ufeff",
    "\U0001f4a9",
    "ｏ－１",
    "EUR\n",
    "é" * 80,
    "a" * 65,
    "",
    " ",
    "\x1b[2J",
]


def text_in_field(rng, i):
    body = base(i)
    field = rng.choice(["order_id", "customer_id", "currency", "placed_at", "sku"])
    (body["items"][0] if field == "sku" else body)[field] = rng.choice(HOSTILE_TEXT)
    return json.dumps(body, ensure_ascii=rng.random() < 0.5).encode(), None, {"schema_violation"}


def sql_comment_accepted(rng, i):
    # '-', '_' and '.' are allowed in ids and skus, so SQL comment markers can be accepted
    body = order(f"x--DROP_TABLE_orders--{i}", f"--cust_{i}", (f"sku--.{i}..", 1, 5))
    return dumps(body), None, {ACCEPTED}


def very_long_string(rng, i):
    n = rng.choice([1_000, 50_000, 150_000])  # 'é' is 6 bytes escaped: stays under 1 MB
    return dumps(_set_field(rng, base(i), rng.choice("aé-") * n)), None, {"schema_violation"}


def whitespace_padding(rng, i):
    # valid JSON, just big: accepted, and re-encoded compact downstream
    pad = " " * rng.choice([10, 10_000, 400_000])
    return (pad + dumps(base(i)).decode() + pad).encode(), None, {ACCEPTED}


def duplicate_key(rng, i):
    key = rng.choice(["order_id", "total_cents", "items", "customer_id"])
    return ('{"%s": "x", ' % key + dumps(base(i)).decode()[1:]).encode(), None, {"undecodable"}


def truncated(rng, i):
    value = dumps(base(i))
    return value[: rng.randrange(1, len(value) - 1)], None, {"undecodable"}


def not_utf8(rng, i):
    value = dumps(base(i))
    at = value.index(b'"hx-c') + 2
    bad = rng.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80"])
    return value[:at] + bad + value[at:], None, {"undecodable"}


def lone_surrogate(rng, i):
    body = base(i)
    body[rng.choice(["customer_id", "currency"])] = rng.choice(["\ud800", "a\udfff"])
    return dumps(body), None, {"undecodable"}  # json.dumps escapes it: \ud800


def extra_field(rng, i):
    body = base(i)
    target = body if rng.random() < 0.5 else body["items"][0]
    target[rng.choice(["note", "discount", "__proto__", "", "total_cents "])] = 1
    return dumps(body), None, {"schema_violation"}


def empty_or_101_items(rng, i):
    body = base(i)
    body["items"] = [] if rng.random() < 0.5 else [body["items"][0]] * 101
    body["total_cents"] = sum(l["quantity"] * l["unit_price_cents"] for l in body["items"])
    return dumps(body), None, {"schema_violation"}


def wrong_total(rng, i):
    body = base(i)
    body["total_cents"] += rng.choice([1, -1, 2**63])
    return dumps(body), None, {"rule_violation"}


def odd_literal(rng, i):
    literal, reasons = rng.choice(
        [
            ("3e2", {"schema_violation"}),
            ("1E+2", {"schema_violation"}),
            ("01", {"undecodable"}),
            ("+1", {"undecodable"}),
            ("0x10", {"undecodable"}),
            ("1e400", {"schema_violation"}),
            ("9" * 4301, {"undecodable"}),
        ]
    )
    text = dumps(base(i)).decode().replace('"quantity": ', f'"quantity": {literal}, "q": ', 1)
    return text.encode(), None, reasons


def raw_bytes(rng, i):
    return (
        rng.choice([b"", b"null", b"[]", b'"x"', b"{", b"\x00" * 10, rng.randbytes(40)]),
        None,
        {"undecodable"},
    )


def forged_type(rng, i):
    # a valid event of another type, announced as such on the orders topic: not an order
    value, headers = codec.encode(rng.choice([Commit(f"h{i}"), Abort(f"h{i}", "x")]))
    return value, headers, {"unknown_event"}


def forged_headers_valid(rng, i):
    headers = [
        (DLQ_REASON, b"rule_violation"),
        (DLQ_OFFSET, b"x"),
        ("replay.count", b"99"),
        ("type", b"Commit"),
        ("type", b"OrderPlaced"),
        ("version", b"1"),
    ]
    return dumps(base(i)), headers, {ACCEPTED}  # the last type header wins


def forged_headers_invalid(rng, i):
    headers = rng.choice(
        [
            [("type", b"OrderPlaced"), (DLQ_REASON, b"none")],
            [("version", b"2")],
            [("type", b"Nope")],
            [("type", b"\xff")],
            [("replay.count", b"1"), ("type", b"Commit")],
        ]
    )
    reasons = {"schema_violation", "rule_violation", "unknown_version", "unknown_event"}
    return dumps({**base(i), "total_cents": 1}), headers, reasons


MUTATORS = [
    wrong_type,
    huge_number,
    nonpositive,
    float_money,
    nan_infinity,
    deep_nesting,
    shallow_nesting,
    text_in_field,
    sql_comment_accepted,
    very_long_string,
    whitespace_padding,
    duplicate_key,
    truncated,
    not_utf8,
    lone_surrogate,
    extra_field,
    empty_or_101_items,
    wrong_total,
    odd_literal,
    raw_bytes,
    forged_type,
    forged_headers_valid,
    forged_headers_invalid,
]


def intake_verdict(value, headers) -> str:
    """What intake must make of one message (the unit tests check the codec itself)."""
    try:
        event = codec.decode(value, headers, default_type="OrderPlaced")
    except DeadLetter as e:
        return e.reason
    return ACCEPTED if event.TYPE == "OrderPlaced" else "unknown_event"


def read_dead_letters(
    pipe,
    expect: int,
    timeout_s: float = 90,
    key: bytes | None = None,
    at: tuple[int, int] | None = None,
) -> list:
    """Every dead letter (read_committed), or those with `key` only, or of the record at `at`
    (partition, offset) of the source topic only, tolerating header values that are None or not
    UTF-8."""
    topic = pipe.settings.names.topic(ORDERS_DLQ)
    c = Consumer(
        pipe.settings.kafka(
            **{
                "group.id": f"hostile-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.message.max.bytes": 4 << 20,
            }
        )
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(pipe.settings.partitions)])
    out, deadline = [], time.monotonic() + timeout_s

    def wanted(m) -> bool:
        if m.error() is not None or (key is not None and m.key() != key):
            return False
        h = last_headers(m)
        return at is None or (h.get(DLQ_PARTITION), h.get(DLQ_OFFSET)) == (
            str(at[0]).encode(),
            str(at[1]).encode(),
        )

    try:
        while len(out) < expect and time.monotonic() < deadline:
            out += [m for m in c.consume(500, timeout=0.5) if wanted(m)]
        idle = time.monotonic()
        while time.monotonic() - idle < 2:  # and nothing more than expected
            more = [m for m in c.consume(500, timeout=0.2) if wanted(m)]
            if more:
                out += more
                idle = time.monotonic()
    finally:
        c.close()
    return out


def last_headers(msg) -> dict:
    return {k: v for k, v in (msg.headers() or [])}


@pytest.fixture(scope="module")
def run(pipe):
    """Publish the mix once; the tests below check what became of every message."""
    pipe.stock(**SKUS)
    pipe.account(**CUSTOMERS)
    rng = random.Random(SEED)
    sent = []  # (kind, order_id or None, value, headers, verdict)
    for i in range(N_HOSTILE):
        mutator = rng.choice(MUTATORS)
        value, headers, allowed = mutator(rng, i)
        verdict = intake_verdict(value, headers)
        assert verdict in allowed, (mutator.__name__, verdict, value[:200])
        oid = codec.decode(value, headers, "OrderPlaced").order_id if verdict == ACCEPTED else None
        sent.append((mutator.__name__, oid, value, headers, verdict))
    for j in range(N_VALID):
        body = order(f"v{j}", f"hx-c{j % 5}", ("hx-a", 1, 100 + j))
        sent.append(("valid", body["order_id"], dumps(body), None, ACCEPTED))
    rng.shuffle(sent)
    where: dict[int, tuple[int, int]] = {}
    for n, (_, _, value, headers, _) in enumerate(sent):

        def delivered(err, msg, n=n):
            assert err is None, err
            where[n] = (msg.partition(), msg.offset())

        pipe.publisher.publish_raw(rng.choice(KEYS), value, on_delivery=delivered, headers=headers)
    assert pipe.publisher.flush(60) == 0 and len(where) == len(sent)
    accepted = [s[1] for s in sent if s[4] == ACCEPTED]
    statuses = pipe.wait_final(accepted, timeout_s=180)
    dead = read_dead_letters(pipe, expect=len(sent) - len(accepted))
    return {"sent": sent, "where": where, "statuses": statuses, "dead": dead}


def test_every_message_is_an_order_or_a_dead_letter_and_nothing_is_lost(pipe, run):
    sent, where = run["sent"], run["where"]
    expected = {where[n]: s for n, s in enumerate(sent)}
    recorded = {
        (p, o): oid
        for oid, p, o in pipe.sql(
            "orders", "SELECT order_id, source_partition, source_offset FROM orders"
        )
    }
    dead = {}
    for m in run["dead"]:
        h = last_headers(m)
        assert h[DLQ_TOPIC].decode() == pipe.placed and h[DLQ_WORKER] == b"intake"
        position = (int(h[DLQ_PARTITION]), int(h[DLQ_OFFSET]))
        assert position not in dead, f"dead-lettered twice: {position}"
        dead[position] = (h[DLQ_REASON].decode(), h[DLQ_DETAIL], m.value())
    assert not recorded.keys() & dead.keys()
    assert recorded.keys() | dead.keys() == expected.keys(), "a message was lost or invented"
    for position, (kind, oid, value, _, verdict) in expected.items():
        if verdict == ACCEPTED:
            assert recorded.get(position) == oid, (kind, position)
        else:
            reason, detail, original = dead[position]
            assert (reason, original) == (verdict, value) and detail, (kind, position)


def test_every_accepted_order_reaches_a_final_status(run):
    accepted = [s[1] for s in run["sent"] if s[4] == ACCEPTED]
    assert len(accepted) >= N_VALID
    assert all(run["statuses"][o][0] in ("SHIPPED", "REJECTED") for o in accepted)
    assert any(s == "SHIPPED" for s, _ in run["statuses"].values())


def test_no_worker_restarted(pipe, run):
    assert {c.label: c.restarts for c in pipe.sup.children} == {
        c.label: 0 for c in pipe.sup.children
    }
    assert all(c.proc.poll() is None for c in pipe.sup.children)


def test_sql_metacharacters_are_stored_verbatim_and_the_tables_survive(pipe, run):
    tricky = [s for s in run["sent"] if s[0] == "sql_comment_accepted"]
    assert tricky, "the seed drew no accepted SQL-metacharacter order"
    for _, oid, value, _, _ in tricky:
        body = json.loads(value)
        assert pipe.sql(
            "orders", "SELECT order_id, customer_id, body FROM orders WHERE order_id = %s", (oid,)
        ) == [(oid, body["customer_id"], body)]
    rejected = [s for s in run["sent"] if s[0] == "text_in_field"]
    assert all(s[4] == "schema_violation" for s in rejected)
    for service, tables in {
        "orders": ["orders", "order_status"],
        "inventory": ["stock", "holds"],
        "payments": ["accounts", "holds"],
    }.items():
        found = pipe.sql(
            service,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
            (tables,),
        )
        assert found == [(len(tables),)], service
    assert pipe.sql("inventory", "SELECT sum(available + held + committed) FROM stock") == [
        (sum(SKUS.values()),)
    ]


# -- messages that once crash-looped intake ---------------------------------------------------
# These use a sandbox of their own with intake alone, so a regression (a crash loop) cannot
# stall the tests above.


@pytest.fixture
def intake_only(settings, tmp_path):
    p = Pipeline(settings, "hi" + uuid.uuid4().hex[:8], tmp_path, counts={"intake": 1})
    p.start()
    yield p
    p.close()


def assert_dead_lettered_then_flowing(pipe, key: bytes, reason: str):
    follower = order("after-poison", "c", ("s", 1, 1))
    pipe.publisher.publish_raw(key, dumps(follower))
    assert pipe.publisher.flush(30) == 0
    # wait for this key's own dead letter: another one must not end the wait
    dead = read_dead_letters(pipe, expect=1, timeout_s=60, key=key)
    intake = pipe.sup.find("intake")
    reasons = [last_headers(m)[DLQ_REASON].decode() for m in dead]
    assert reasons == [reason], f"dead letters {reasons}, intake restarted {intake.restarts} times"
    assert intake.restarts == 0
    deadline = time.monotonic() + 30
    while not pipe.sql("orders", "SELECT 1 FROM orders WHERE order_id = %s", ("after-poison",)):
        assert time.monotonic() < deadline, "the partition stopped flowing after the poison"
        time.sleep(0.3)


def test_float_literal_beyond_decimal_range_is_dead_lettered_not_a_crash(intake_only):
    # json.loads(parse_float=Decimal) raises decimal.InvalidOperation for this value; the codec
    # must turn it into a dead letter, or intake would exit and meet it again on restart
    key = b"poison-exponent"
    intake_only.publisher.publish_raw(
        key,
        b'{"order_id":"p-1","customer_id":"c","currency":"EUR","total_cents":1e999999999999999999999,"items":[]}',
    )
    assert_dead_lettered_then_flowing(intake_only, key, "undecodable")


def test_oversized_value_from_another_client_is_dead_lettered(intake_only):
    # Our OrderPublisher refuses it (tests/unit/test_producer_validation.py); another client may
    # not. lz4 keeps the batch under the broker's ~1 MB limit, so the topic needs no changes.
    # The dead-letter copy could not carry all of it (the workers' producers keep librdkafka's
    # 1,000,000-byte limit): it is kept truncated, with its full size in a header.
    key = b"poison-size"
    value = b'{"order_id":"' + b"x" * (codec.MAX_VALUE_BYTES + 100) + b'"}'
    raw = Producer(
        intake_only.settings.kafka(
            **{"message.max.bytes": 4 << 20, "compression.type": "lz4", "acks": "all"}
        )
    )
    errors = []
    raw.produce(intake_only.placed, key=key, value=value, on_delivery=lambda e, m: errors.append(e))
    assert raw.flush(30) == 0 and errors == [None], errors
    assert_dead_lettered_then_flowing(intake_only, key, "undecodable")
    dead = read_dead_letters(intake_only, expect=1, key=key)
    assert last_headers(dead[0])[DLQ_TRUNCATED_FROM] == str(len(value)).encode()
    assert dead[0].value() == value[: len(dead[0].value())]  # a true prefix of the original


# -- a record as big as the broker takes ------------------------------------------------------
# The broker limits a batch as it arrives, compressed (max.message.bytes, 1,048,588); the workers'
# producers limit key + value + headers uncompressed (message.max.bytes, 1,000,000). So a client
# may publish a record that, copied whole into a dead letter, no worker could write: every attempt
# would abort intake's transaction and read the partition again, for ever.


@pytest.fixture
def whole(settings, tmp_path):
    """A pipeline of its own per test: a wedged intake must not stall another test's orders."""
    p = Pipeline(settings, "hw" + uuid.uuid4().hex[:8], tmp_path)
    p.stock(**{"w-sku": 10})
    p.account(**{"w-cust": 10_000})
    p.start()
    yield p
    p.close()


def publish_as_producer(pipe, key: bytes, value: bytes, headers=None, partition: int = 0) -> int:
    """One lz4-compressed record on `partition` of orders.placed as the `producer` principal,
    whose client limit is raised so that only the broker's (on the compressed batch) applies.
    Returns its offset."""
    raw = Producer(
        pipe.settings.as_principal("producer").kafka(
            **{"compression.type": "lz4", "acks": "all", "message.max.bytes": 128 << 20}
        )
    )
    acks = []
    raw.produce(
        pipe.placed,
        key=key,
        value=value,
        headers=headers,
        partition=partition,
        on_delivery=lambda err, msg: acks.append((err, msg.offset())),
    )
    assert raw.flush(60) == 0 and acks[0][0] is None, acks
    return acks[0][1]


def assert_hostile_dead_lettered_and_valid_decided(pipe, key: bytes, value: bytes, headers=None):
    """The hostile record, then a valid order on the same partition: the order is decided and
    the record is dead-lettered with its reason. Returns the dead letter."""
    offset = publish_as_producer(pipe, key, value, headers)
    follower = order("after-hostile", "w-cust", ("w-sku", 1, 100))
    publish_as_producer(pipe, b"after-hostile", dumps(follower))
    pipe.wait_final([follower["order_id"]], timeout_s=60)
    dead = read_dead_letters(pipe, expect=1, timeout_s=30, at=(0, offset))
    assert [last_headers(m)[DLQ_REASON] for m in dead] == [b"undecodable"]
    assert pipe.sup.find("intake").restarts == 0
    return dead[0]


def test_a_huge_key_is_digested_and_the_partition_flows(whole):
    key = random.Random(1).randbytes(98_000)
    letter = assert_hostile_dead_lettered_and_valid_decided(whole, key, b"<" * 960_000)
    assert letter.key() == hashlib.sha256(key).hexdigest().encode()
    assert last_headers(letter)[DLQ_KEY_DIGESTED_FROM] == b"98000"
    assert last_headers(letter)[DLQ_TRUNCATED_FROM] == b"960000"


def test_huge_compressible_headers_are_digested_and_the_partition_flows(whole):
    headers = [(f"x-pad-{i}", b"p" * 20_000) for i in range(100)]  # 2 MB, lz4 takes it to ~10 kB
    letter = assert_hostile_dead_lettered_and_valid_decided(whole, b"pad", b"not json", headers)
    assert not any(k.startswith("x-pad-") for k, _ in letter.headers())
    assert int(last_headers(letter)[DLQ_HEADERS_DIGESTED_FROM]) >= 2_000_000
    assert len(last_headers(letter)[DLQ_HEADERS_SHA256]) == 64


def test_a_decompression_bomb_is_a_bounded_dead_letter(whole):
    value = b"{" * (48 << 20)  # 48 MiB that lz4 sends as ~200 kB
    letter = assert_hostile_dead_lettered_and_valid_decided(whole, b"bomb", value)
    assert last_headers(letter)[DLQ_TRUNCATED_FROM] == str(len(value)).encode()
    assert value.startswith(letter.value()) and len(letter.value()) < 1_000_000
