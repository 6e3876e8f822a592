"""Who wrote a tx.log event. Several services may write tx.log (its ACL is per topic), so the
topic alone cannot say whose a vote is: each writer signs its events with its own key
(HMAC-SHA256 over the whole record and its topic), and every
reader that folds the log checks that the event's author signed it. TxBegun is intake's, a vote
or an acknowledgement its participant's, a decision or a deadline marker the coordinator's.

A forged event (unsigned, signed by another service, or altered) is dead-lettered by the
coordinator and skipped by every other reader, so it never reaches the fold. The check is a pure
function of the record and the keys: every coordinator that reads the partition, and every
rebuild, folds the same events in the same order."""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Mapping

from schemas import codec
from schemas.errors import DeadLetter, UnknownEventError
from topics.catalogue import TX_LOG

SIGNER = "orderbus-signer"
SIGNATURE = "orderbus-signature"
# the services that write tx.log, each with a key of its own
AUTHORS = ("intake", "coordinator", "inventory", "payment")


class ForgedEventError(DeadLetter):
    """A tx.log event its author did not sign."""

    reason = "forged"


def author(event) -> str:
    """The only service that may write `event` on tx.log."""
    if event.TYPE == "TxBegun":
        return "intake"
    if event.TYPE in ("Voted", "Acked"):
        return event.participant
    return "coordinator"


def encoded_headers(headers) -> bytes:
    """Headers as one string, each name and value after its length (4 bytes big-endian, -1 for
    no value), so no two different header lists encode alike: what a signature covers, and what
    the sha256 of a dead letter's dropped headers is taken over (for headers within its bound,
    no shorter than a Kafka record encodes them, whose lengths are varints)."""
    parts = []
    for name, value in headers or ():
        name = name.encode("utf-8", "surrogatepass")
        value = _bytes(value) if value is not None else None
        parts += [
            struct.pack(">i", len(name)),
            name,
            struct.pack(">i", -1 if value is None else len(value)),
            value or b"",
        ]
    return b"".join(parts)


def signature(key: bytes, topic: str, msg_key: bytes | None, value: bytes | None, headers) -> bytes:
    """Over the topic (so an event signed for one pipeline's tx.log is no event of another's),
    the key, the value and every header in order (an added or changed one breaks it)."""
    # the topic, key and value framed as two-item headers are: no two records sign alike
    framed = encoded_headers([(topic, msg_key), ("", value)] + list(headers or ()))
    return hmac.new(key, framed, hashlib.sha256).hexdigest().encode()


def _bytes(value) -> bytes:
    return value.encode() if isinstance(value, str) else (value or b"")


class Signer:
    """Signs what one service writes to the signed topics."""

    def __init__(self, name: str, key: bytes, topics: tuple[str, ...]):
        self.name, self.key, self.topics = name, key, topics

    def headers(self, topic: str, msg_key: bytes | None, value: bytes | None, headers):
        if topic not in self.topics:
            return headers
        return list(headers or ()) + [
            (SIGNER, self.name.encode()),
            (SIGNATURE, signature(self.key, topic, msg_key, value, headers)),
        ]


class Verifier:
    """Checks that a tx.log event was signed by its author."""

    def __init__(self, keys: Mapping[str, bytes]):
        self.keys = dict(keys)

    @classmethod
    def of(cls, settings) -> "Verifier":
        return cls({a: settings.signing_key(a) for a in AUTHORS})

    def decode(self, msg):
        """The event of a tx.log record; DeadLetter if it is undecodable, no tx.log event, or
        not signed by its author."""
        event = codec.decode(msg.value(), msg.headers())
        if event.TYPE not in TX_LOG.events:
            raise UnknownEventError(f"{event.TYPE} does not belong on {msg.topic()}")
        self.check(msg, event)
        return event

    def check(self, msg, event) -> None:
        h = dict(msg.headers() or ())
        claimed, given = _bytes(h.get(SIGNER)).decode(errors="replace"), _bytes(h.get(SIGNATURE))
        writer = author(event)
        if claimed != writer or writer not in self.keys:
            raise ForgedEventError(f"{event.TYPE} is {writer}'s to write; signed by {claimed or 'nobody'}")
        signed = [(k, v) for k, v in (msg.headers() or ()) if k not in (SIGNER, SIGNATURE)]
        want = signature(self.keys[writer], msg.topic(), msg.key(), msg.value(), signed)
        if not hmac.compare_digest(given, want):
            raise ForgedEventError(f"{event.TYPE} signed as {writer} with another key, or altered")


def signed_as(settings, writer: str, topic: str, msg_key: bytes | None, value: bytes | None, headers) -> list:
    """`headers` with `writer`'s signature, for a record an operator's tool writes in a service's
    name (it holds every key, as the coordinator does)."""
    return Signer(writer, settings.signing_key(writer), (topic,)).headers(topic, msg_key, value, headers)
