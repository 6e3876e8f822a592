"""What a worker plugs into the loop (workers/runtime/loop.py): a handler that turns a batch of
messages into outputs, and the outputs themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from confluent_kafka import Message, TopicPartition

# a record's headers as the Kafka client takes them: (name, value) pairs
Header = tuple[str, str | bytes | None]
Headers = list[Header]


@dataclass(frozen=True)
class Out:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    partition: int | None = None  # None: by key (murmur2, as every orderbus producer)
    # what this output adds to a counter (a dead letter, a vote, a decision), called once it is
    # acknowledged: a batch read again after a crash is counted then
    count: Callable[[], None] | None = field(default=None, compare=False, repr=False)


class Handler(Protocol):
    topics: tuple[str, ...]

    def process(self, messages: list[Message], now_ms: int) -> list[Out]: ...
    def tick(self, now_ms: int) -> list[Out]: ...
    # the partitions of its input to read nothing of now, because a worker downstream is far
    # behind on them (back-pressure)
    def holding(self) -> frozenset[int]: ...
    # returns (topic, partition) -> offset to read from, where it is not the committed offset
    def assigned(self, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]: ...
    def revoked(self, partitions: list[TopicPartition]) -> None: ...
    # committed with the offset (the coordinator marks its own commits)
    def offset_metadata(self, topic: str, partition: int) -> str: ...

    # how often the loop lets every output so far be acknowledged and every offset committed,
    # then calls checkpoint(): the handler's state then matches the committed offsets (None: never)
    sync_every_s: float | None

    def checkpoint(self, now_ms: int) -> None: ...

    # set by the loop: its watchdog, told during a long re-fold, and whether this instance has
    # read a partition to the end it last fetched
    on_progress: Callable[[], None]
    caught_up: Callable[[str, int], bool]


class Stateless:
    """A handler that keeps nothing between batches and has no timers."""

    topics: tuple[str, ...]
    on_progress: Callable[[], None] = staticmethod(lambda: None)
    caught_up: Callable[[str, int], bool] = staticmethod(lambda topic, partition: True)
    sync_every_s: float | None = None

    def assigned(self, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
        return {}

    def revoked(self, partitions: list[TopicPartition]) -> None:
        pass

    def tick(self, now_ms: int) -> list[Out]:
        return []

    def holding(self) -> frozenset[int]:
        return frozenset()

    def offset_metadata(self, topic: str, partition: int) -> str:
        return ""

    def checkpoint(self, now_ms: int) -> None:
        pass
