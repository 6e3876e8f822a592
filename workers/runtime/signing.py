"""Who wrote an event, and where. Several services write each signed topic (tx.log, the commands
topics, orders.status; their ACLs are per topic), so the topic alone cannot say whose a record
is: each writer signs what it writes there with its own key (HMAC-SHA256 over the topic, key,
value and headers), and every reader checks, before it acts or folds, that

- the event's author signed it: TxBegun, Prepare and PENDING are intake's; a vote or an
  acknowledgement its participant's; Commit, Abort, CONFIRMED, REJECTED, a decision or a
  deadline marker the coordinator's; SHIPPED shipping's;
- it sits where its order's events sit: its key is its order id, on the key's partition (a
  signature does not cover the partition, and a copy on another partition would be folded by
  another owner, apart from the order's own events);
- a TxBegun names exactly the pipeline's participants.

A refused record is dead-lettered by the worker that reads it and skipped by every other reader,
so it never reaches a fold. The check is a pure function of the record and the keys.

Keys have ids (a digest of the key), carried beside the signature, and a service may have
several: it signs with its newest, and every key it ever had still verifies, so a rotation
never turns history into forgeries (README, Security: rotating a key).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import struct
from typing import Callable, Iterable, Mapping, Sequence, overload

from confluent_kafka import Message

from schemas import codec
from schemas.errors import DeadLetter, RuleViolationError, UnknownEventError
from schemas.events import (
    PARTICIPANTS,
    Acked,
    Event,
    Prepare,
    StatusChanged,
    TxBegun,
    Voted,
)
from topics.catalogue import PARTITIONS, REPLAY_COUNT, TX_LOG
from topics.partitioner import partition_for
from topics.read import coordinates, headers_of
from workers.coordinator.fold import TxLogEvent
from workers.runtime.handler import Header, Headers
from workers.runtime.settings import Settings

log = logging.getLogger(__name__)
SIGNER = "orderbus-signer"
KEY_ID = "orderbus-key-id"
SIGNATURE = "orderbus-signature"
# headers a signature does not cover: its own, and the count a re-drive adds
UNSIGNED = (SIGNER, KEY_ID, SIGNATURE, REPLAY_COUNT)
# the services that write the signed topics, each with keys of its own
AUTHORS = ("intake", "coordinator", "inventory", "payment", "shipping")


class ForgedEventError(DeadLetter):
    """An event its author did not sign."""

    reason = "forged"


class MisplacedEventError(DeadLetter):
    """An event off its order's partition, or keyed by something else than its order id."""

    reason = "misplaced"


def author(event: Event) -> str:
    """The only service that may write `event`."""
    if isinstance(event, (TxBegun, Prepare)):
        return "intake"
    if isinstance(event, (Voted, Acked)):
        return event.participant
    if isinstance(event, StatusChanged):
        return {"PENDING": "intake", "SHIPPED": "shipping"}.get(event.status, "coordinator")
    return "coordinator"  # Decided, DeadlinePassed, Commit, Abort


def key_id(key: bytes) -> str:
    """A key's public name: no key can be learnt from it."""
    return hashlib.sha256(b"orderbus signing key id\0" + key).hexdigest()[:16]


def encoded_headers(headers: Iterable[Header] | None) -> bytes:
    """Headers as one string, each name and value after its length (4 bytes big-endian, -1 for
    no value), so no two different header lists encode alike: what a signature covers, and what
    the sha256 of a dead letter's dropped headers is taken over (for headers within its bound,
    no shorter than a Kafka record encodes them, whose lengths are varints)."""
    parts: list[bytes] = []
    for name, value in headers or ():
        raw_name = name.encode("utf-8", "surrogatepass")
        raw_value = _bytes(value) if value is not None else None
        parts += [
            struct.pack(">i", len(raw_name)),
            raw_name,
            struct.pack(">i", -1 if raw_value is None else len(raw_value)),
            raw_value or b"",
        ]
    return b"".join(parts)


def signature(
    key: bytes,
    topic: str,
    msg_key: bytes | None,
    value: bytes | None,
    headers: Iterable[Header] | None,
) -> bytes:
    """Over the topic (so an event signed for one pipeline's topic is no event of another's, nor
    of another topic), the key, the value and every covered header in order (an added or changed
    one breaks it)."""
    # the topic, key and value framed as two-item headers are: no two records sign alike
    covered = [(k, v) for k, v in (headers or ()) if k not in UNSIGNED]
    framed = encoded_headers([(topic, msg_key), ("", value)] + covered)
    return hmac.new(key, framed, hashlib.sha256).hexdigest().encode()


def _bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else (value or b"")


class Signer:
    """Signs what one service writes to the signed topics."""

    def __init__(self, name: str, key: bytes, topics: Iterable[str]):
        self.name, self.key, self.topics = name, key, frozenset(topics)
        self.id = key_id(key).encode()

    def headers(
        self, topic: str, msg_key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> Headers | None:
        if topic not in self.topics:
            return headers
        return self.sign(topic, msg_key, value, headers)

    def sign(
        self,
        topic: str,
        msg_key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header] | None,
    ) -> Headers:
        """`headers` with this service's signature, whatever the topic."""
        return list(headers or ()) + [
            (SIGNER, self.name.encode()),
            (KEY_ID, self.id),
            (SIGNATURE, signature(self.key, topic, msg_key, value, headers)),
        ]


Keys = Mapping[str, "bytes | Iterable[bytes]"]


class Verifier:
    """Checks that an event was signed by its author and sits where its order's events sit."""

    def __init__(
        self, keys: Keys, reload: Callable[[], Keys] | None = None, partitions: int = PARTITIONS
    ):
        self.keys: dict[str, dict[str, bytes]] = {}
        self._take(keys)
        self.reload = reload
        self.partitions = partitions  # of every topic

    @classmethod
    def of(cls, settings: Settings) -> "Verifier":
        def load() -> Keys:
            return {a: settings.signing_keys(a) for a in AUTHORS}

        return cls(load(), reload=load, partitions=settings.partitions)

    def _take(self, keys: Keys) -> None:
        for writer, given in keys.items():
            held = self.keys.setdefault(writer, {})  # a key once known is never forgotten
            for k in [given] if isinstance(given, bytes) else given:
                held[key_id(k)] = k

    # a tx.log record unless told otherwise: TX_LOG.events are the TxLogEvent types
    @overload
    def decode(self, msg: Message) -> TxLogEvent: ...
    @overload
    def decode(self, msg: Message, accepts: tuple[str, ...]) -> Event: ...
    def decode(self, msg: Message, accepts: tuple[str, ...] = TX_LOG.events) -> Event:
        """The event of a signed record; DeadLetter if it is undecodable, not one `accepts`,
        misplaced or not signed by its author."""
        event = codec.decode(msg.value(), headers_of(msg))
        if event.TYPE not in accepts:
            raise UnknownEventError(f"{event.TYPE} does not belong on {msg.topic()}")
        self.check(msg, event)
        return event

    def check(self, msg: Message, event: Event) -> None:
        placed(msg, event, self.partitions)
        h = dict(headers_of(msg) or ())
        claimed, given = _bytes(h.get(SIGNER)).decode(errors="replace"), _bytes(h.get(SIGNATURE))
        writer = author(event)
        if claimed != writer or writer not in self.keys:
            raise ForgedEventError(
                f"{event.TYPE} is {writer}'s to write; signed by {claimed or 'nobody'}"
            )
        keys = self._keys(
            writer, _bytes(h.get(KEY_ID)).decode(errors="replace") if KEY_ID in h else None
        )
        headers = headers_of(msg) or ()
        topic, _, _ = coordinates(msg)
        if not any(
            hmac.compare_digest(given, signature(k, topic, msg.key(), msg.value(), headers))
            for k in keys
        ):
            raise ForgedEventError(f"{event.TYPE} signed as {writer} with another key, or altered")
        if isinstance(event, TxBegun) and sorted(event.participants) != sorted(PARTICIPANTS):
            raise RuleViolationError(
                f"TxBegun names {list(event.participants)}, not {list(PARTICIPANTS)}"
            )

    def _keys(self, writer: str, kid: str | None) -> list[bytes]:
        """The keys a record of `writer`'s may be signed with: the one its id names, or, on a
        record signed before keys had ids, each. An id not known yet makes it read the key files
        again, every time: a rotated key reaches every reader without a restart, and a genuine
        record is never refused for having come too soon after another new key (a few small
        files read per forged record is cheap beside the dead letter it becomes)."""
        held = self.keys[writer]
        if kid is None:
            return list(held.values())
        if kid not in held and self.reload:
            try:
                self._take(self.reload())
            # a key file being written: the record is judged on what is known
            except Exception as e:
                log.warning("reading the signing keys again failed: %s", e)
        return [held[kid]] if kid in held else []


def placed(msg: Message, event: Event, partitions: int) -> None:
    """MisplacedEventError unless `msg` is keyed by its event's order id, on that key's
    partition of `partitions` (Kafka's default partitioner, which every orderbus producer uses)."""
    key = msg.key()
    if key != event.order_id.encode():
        raise MisplacedEventError(
            f"{event.TYPE} of order {event.order_id!r} keyed {(key or b'')[:80]!r}"
        )
    home = partition_for(key, partitions)
    if msg.partition() != home:
        raise MisplacedEventError(
            f"{event.TYPE} of order {event.order_id!r} on partition {msg.partition()}, not {home}"
        )


def signed_as(
    settings: Settings,
    writer: str,
    topic: str,
    msg_key: bytes | None,
    value: bytes | None,
    headers: Sequence[Header] | None,
) -> Headers:
    """`headers` with `writer`'s signature, for a record an operator's tool writes in a service's
    name (it holds every key, as the coordinator does)."""
    return Signer(writer, settings.signing_key(writer), (topic,)).sign(
        topic, msg_key, value, headers
    )
