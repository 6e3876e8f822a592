"""A tx.log event counts only when its author signed it: a participant holding its own key
cannot pass its events off as another's, nor alter one, nor move one to another pipeline."""

from __future__ import annotations

import pytest
from records import Msg

from schemas import codec
from schemas.events import Acked, DeadlinePassed, Decided, TxBegun, Voted
from workers.runtime.signing import SIGNER, ForgedEventError, Signer, Verifier

TOPIC = "p.tx.log.v1"
KEYS = {"intake": b"i" * 32, "coordinator": b"c" * 32, "inventory": b"v" * 32, "payment": b"p" * 32}


def record(event, as_: str | None, key: bytes | None = None, topic: str = TOPIC, signed_for: str = TOPIC) -> Msg:
    value, headers = codec.encode(event)
    if as_ is not None:
        signer = Signer(as_, key or KEYS[as_], (signed_for,))
        headers = signer.headers(signed_for, b"o-1", value, headers)
    return Msg(value, headers, _key=b"o-1", _topic=topic)


GENUINE = [
    (TxBegun("o-1", ("inventory", "payment"), 1_000), "intake"),
    (Voted("o-1", "payment", "yes", None), "payment"),
    (Acked("o-1", "inventory", "commit"), "inventory"),
    (Decided("o-1", "commit", None), "coordinator"),
    (DeadlinePassed("o-1", 5), "coordinator"),
]


@pytest.mark.parametrize("event, writer", GENUINE, ids=[e.TYPE for e, _ in GENUINE])
def test_an_event_its_author_signed_is_taken(event, writer):
    assert Verifier(KEYS).decode(record(event, writer)) == event


FORGED = [
    ("unsigned", record(Voted("o-1", "payment", "yes", None), None)),
    ("payment's vote signed by inventory", record(Voted("o-1", "payment", "yes", None), "inventory")),
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
]


@pytest.mark.parametrize("msg", [m for _, m in FORGED], ids=[n for n, _ in FORGED])
def test_a_forged_event_is_refused_with_a_reason(msg):
    with pytest.raises(ForgedEventError) as e:
        Verifier(KEYS).decode(msg)
    assert e.value.reason == "forged"


def test_an_altered_or_added_to_record_is_refused():
    genuine = record(Voted("o-1", "payment", "no", "insufficient_funds"), "payment")
    to_yes = codec.encode(Voted("o-1", "payment", "yes", None))[0]
    for msg in (
        Msg(to_yes, genuine._headers, _key=b"o-1", _topic=TOPIC),
        Msg(genuine._value, genuine._headers + [("type", b"Voted")], _key=b"o-1", _topic=TOPIC),
        Msg(genuine._value, genuine._headers, _key=b"o-2", _topic=TOPIC),
    ):
        with pytest.raises(ForgedEventError):
            Verifier(KEYS).decode(msg)


def test_only_the_signed_topics_are_signed():
    signer = Signer("payment", KEYS["payment"], (TOPIC,))
    assert signer.headers("p.orders.dlq.v1", b"k", b"v", [("type", b"x")]) == [("type", b"x")]
    assert (SIGNER, b"payment") in signer.headers(TOPIC, b"k", b"v", [("type", b"x")])
