"""An event counts only when its author signed it, on its order's partition: a service holding
its own key cannot pass its events off as another's, alter one, move one to another pipeline,
topic, order or partition, nor begin an order for fewer participants. Keys have ids: a rotated
key keeps what it signed valid, and a re-driven record stays its author's."""

from __future__ import annotations

import pytest
from records import Msg

from schemas import codec
from schemas.errors import RuleViolationError
from schemas.events import (
    Abort,
    Acked,
    Commit,
    DeadlinePassed,
    Decided,
    OrderPlaced,
    Prepare,
    StatusChanged,
    TxBegun,
    Voted,
)
from topics.catalogue import COMMANDS as COMMANDS_TOPIC
from topics.catalogue import ORDERS_STATUS
from topics.partitioner import partition_for
from topics.redrive import Letter
from workers.runtime import signing
from workers.runtime.signing import (
    KEY_ID,
    SIGNER,
    ForgedEventError,
    MisplacedEventError,
    Signer,
    Verifier,
    key_id,
)

TOPIC = "p.tx.log.v1"
COMMANDS = "p." + COMMANDS_TOPIC.name
STATUS = "p." + ORDERS_STATUS.name
KEYS = {
    "intake": b"i" * 32,
    "coordinator": b"c" * 32,
    "inventory": b"v" * 32,
    "payment": b"p" * 32,
    "shipping": b"s" * 32,
}


def verifier_of(keys, reload=None) -> Verifier:
    return Verifier(keys, reload, partitions=PARTITIONS)


PARTITIONS = 6  # a deployment of several, where an event can sit on the wrong one
HOME = partition_for(b"o-1", PARTITIONS)
ORDER = codec.decode(
    b'{"order_id":"o-1","customer_id":"c","currency":"EUR","total_cents":100,'
    b'"items":[{"sku":"s","quantity":1,"unit_price_cents":100}]}',
    None,
    default_type="OrderPlaced",
)
assert isinstance(ORDER, OrderPlaced)


def record(
    event,
    as_: str | None,
    key: bytes | None = None,
    topic: str = TOPIC,
    signed_for: str | None = None,
    partition: int = HOME,
    msg_key: bytes = b"o-1",
) -> Msg:
    value, headers = codec.encode(event)
    if as_ is not None:
        signed_for = signed_for or topic
        signer = Signer(as_, key or KEYS[as_], (signed_for,))
        headers = signer.headers(signed_for, msg_key, value, headers)
    return Msg(value, headers, _key=msg_key, _topic=topic, _partition=partition)


def accepts(topic: str):
    return {
        TOPIC: signing.TX_LOG.events,
        COMMANDS: COMMANDS_TOPIC.events,
        STATUS: ORDERS_STATUS.events,
    }[topic]


GENUINE = [
    (TxBegun("o-1", ("inventory", "payment"), 1_000), "intake", TOPIC),
    (Voted("o-1", "payment", "yes", None), "payment", TOPIC),
    (Acked("o-1", "inventory", "commit"), "inventory", TOPIC),
    (Decided("o-1", "commit", None), "coordinator", TOPIC),
    (DeadlinePassed("o-1", 5), "coordinator", TOPIC),
    (Prepare("o-1", ORDER, 1_000), "intake", COMMANDS),
    (Commit("o-1"), "coordinator", COMMANDS),
    (Abort("o-1", "deadline"), "coordinator", COMMANDS),
    (StatusChanged("o-1", "PENDING", None, 1), "intake", STATUS),
    (StatusChanged("o-1", "CONFIRMED", None, 1), "coordinator", STATUS),
    (StatusChanged("o-1", "REJECTED", "deadline", 1), "coordinator", STATUS),
    (StatusChanged("o-1", "SHIPPED", None, 1), "shipping", STATUS),
]


@pytest.mark.parametrize(
    "event, writer, topic", GENUINE, ids=[f"{e.TYPE}-{w}" for e, w, _ in GENUINE]
)
def test_an_event_its_author_signed_is_taken(event, writer, topic):
    assert verifier_of(KEYS).decode(record(event, writer, topic=topic), accepts(topic)) == event


FORGED = [
    ("unsigned", record(Voted("o-1", "payment", "yes", None), None)),
    (
        "payment's vote signed by inventory",
        record(Voted("o-1", "payment", "yes", None), "inventory"),
    ),
    ("a decision signed by a participant", record(Decided("o-1", "commit", None), "inventory")),
    ("a deadline signed by intake", record(DeadlinePassed("o-1", 5), "intake")),
    (
        "claims payment, inventory's key",
        record(Voted("o-1", "payment", "yes", None), "payment", key=KEYS["inventory"]),
    ),
    (
        "signed for another pipeline",
        record(Voted("o-1", "payment", "yes", None), "payment", signed_for="q.tx.log.v1"),
    ),
    ("a commit signed by intake", record(Commit("o-1"), "intake", topic=COMMANDS)),
    ("an abort signed by intake", record(Abort("o-1", "deadline"), "intake", topic=COMMANDS)),
    ("unsigned commands", record(Commit("o-1"), None, topic=COMMANDS)),
    (
        "CONFIRMED signed by intake",
        record(StatusChanged("o-1", "CONFIRMED", None, 1), "intake", topic=STATUS),
    ),
    (
        "SHIPPED signed by the coordinator",
        record(StatusChanged("o-1", "SHIPPED", None, 1), "coordinator", topic=STATUS),
    ),
    (
        "a command signed for another topic",
        record(Commit("o-1"), "coordinator", topic=COMMANDS, signed_for="p.orders.status.v1"),
    ),
]


@pytest.mark.parametrize("msg", [m for _, m in FORGED], ids=[n for n, _ in FORGED])
def test_a_forged_event_is_refused_with_a_reason(msg):
    with pytest.raises(ForgedEventError) as e:
        verifier_of(KEYS).decode(msg, accepts(msg.topic()))
    assert e.value.reason == "forged"


def test_an_altered_or_added_to_record_is_refused():
    genuine = record(Voted("o-1", "payment", "no", "insufficient_funds"), "payment")
    to_yes = codec.encode(Voted("o-1", "payment", "yes", None))[0]
    for msg in (
        Msg(to_yes, genuine._headers, _key=b"o-1", _topic=TOPIC, _partition=HOME),
        Msg(
            genuine._value,
            genuine._headers + [("type", b"Voted")],
            _key=b"o-1",
            _topic=TOPIC,
            _partition=HOME,
        ),
    ):
        with pytest.raises(ForgedEventError):
            verifier_of(KEYS).decode(msg)


@pytest.mark.parametrize(
    "msg",
    [
        record(
            Voted("o-1", "inventory", "yes", None), "inventory", partition=(HOME + 1) % PARTITIONS
        ),
        record(Commit("o-1"), "coordinator", topic=COMMANDS, partition=(HOME + 3) % PARTITIONS),
        record(Voted("o-1", "inventory", "yes", None), "inventory", msg_key=b"o-2"),
        record(Voted("o-1", "inventory", "yes", None), "inventory", msg_key=b""),
    ],
    ids=[
        "vote on another partition",
        "command on another partition",
        "keyed by another order",
        "no key",
    ],
)
def test_an_event_off_its_orders_partition_or_key_is_refused(msg):
    """Genuinely signed, but not where its order's events are: another owner would fold it apart
    from the order's own events, and decide the order a second time."""
    with pytest.raises(MisplacedEventError) as e:
        verifier_of(KEYS).decode(msg, accepts(msg.topic()))
    assert e.value.reason == "misplaced"


def test_a_begin_names_exactly_the_pipelines_participants():
    for named in (("inventory",), ("payment",)):
        with pytest.raises(RuleViolationError):
            verifier_of(KEYS).decode(record(TxBegun("o-1", named, 1_000), "intake"))  # type: ignore[arg-type]
    assert verifier_of(KEYS).decode(
        record(TxBegun("o-1", ("payment", "inventory"), 1_000), "intake")
    )


def test_only_the_signed_topics_are_signed():
    signer = Signer("payment", KEYS["payment"], (TOPIC,))
    assert signer.headers("p.orders.dlq.v1", b"k", b"v", [("type", b"x")]) == [("type", b"x")]
    signed = signer.headers(TOPIC, b"k", b"v", [("type", b"x")])
    assert (SIGNER, b"payment") in signed and (KEY_ID, key_id(KEYS["payment"]).encode()) in signed


def test_a_redriven_record_is_still_its_authors():
    """A re-drive adds how often the record went round; that count is no part of what was
    signed, so the copy counts as the original would."""
    genuine = record(Voted("o-1", "inventory", "yes", None), "inventory")
    letter = Letter(
        0, 7, 0, b"o-1", genuine._value, tuple(genuine._headers) + (("dlq.reason", b"x"),)
    )
    copy = Msg(genuine._value, letter.replay_headers(1), _key=b"o-1", _topic=TOPIC, _partition=HOME)
    assert verifier_of(KEYS).decode(copy) == Voted("o-1", "inventory", "yes", None)


def test_a_rotated_key_keeps_what_it_signed_valid():
    """The newest key signs; every older one still verifies what it signed, so history stays
    valid and a re-fold after a rotation folds the same events."""
    new = b"V" * 32
    before = record(Voted("o-1", "inventory", "yes", None), "inventory")
    after = record(Voted("o-1", "inventory", "no", "out_of_stock"), "inventory", key=new)
    rotated = verifier_of({**KEYS, "inventory": [new, KEYS["inventory"]]})
    assert rotated.decode(before).vote == "yes" and rotated.decode(after).vote == "no"
    with pytest.raises(ForgedEventError):
        verifier_of(KEYS).decode(after)  # nobody told of the new key: a forgery to it


def test_a_verifier_reads_its_keys_again_for_each_new_key_id():
    """A key added to the files reaches a running reader at the first record it signed, however
    soon after another: two rotations in a row refuse nothing genuine."""
    files = {**KEYS}
    verifier = verifier_of(files, reload=lambda: files)
    for n, new in enumerate((b"V" * 32, b"W" * 32)):
        files["inventory"] = [new, KEYS["inventory"]]  # type: ignore[assignment]
        vote = record(Voted("o-1", "inventory", "yes", None), "inventory", key=new)
        assert verifier.decode(vote).vote == "yes", n


def test_a_record_signed_before_keys_had_ids_is_checked_against_each_key():
    genuine = record(Voted("o-1", "inventory", "yes", None), "inventory")
    legacy = Msg(
        genuine._value,
        [h for h in genuine._headers if h[0] != KEY_ID],
        _key=b"o-1",
        _topic=TOPIC,
        _partition=HOME,
    )
    assert (
        verifier_of({**KEYS, "inventory": [b"V" * 32, KEYS["inventory"]]}).decode(legacy).vote
        == "yes"
    )
