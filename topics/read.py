"""Reading a topic from a start to its end, committed records only, without joining a group."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, TypeVar, cast

from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AdminClient,
    OffsetSpec,
)

from schemas.errors import DeadLetter

E = TypeVar("E")  # what a decoder makes of a record
BEGINNING = -2


class ReadError(RuntimeError):
    """A partition answered with an error (a broker down, access refused): `error` says which."""

    def __init__(self, message: str, error: KafkaError):
        super().__init__(message)
        self.error = error


class IncompleteRead(TimeoutError):
    pass


def coordinates(msg: Message) -> tuple[str, int, int]:
    """A record's topic, partition and offset. librdkafka sets all three on every record it
    reads and every one it acknowledges; its stubs make them optional for the error events, which
    may carry none."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None, "not a record"
    return topic, partition, offset


def headers_of(msg: Message) -> list[tuple[str, bytes | None]] | None:
    """A consumed record's headers as librdkafka gives them: (name, value) pairs, or None. The
    stubs type them as whatever a producer accepts (a dict too, str values too)."""
    return cast("list[tuple[str, bytes | None]] | None", msg.headers())


def text_headers(msg: Message) -> dict[str, str]:
    """A consumed record's headers as text, the last value of a name winning (a worker appends
    its dlq.* headers after any the record arrived with, so a dead letter's own come last)."""
    return {k: (v or b"").decode("utf-8", errors="replace") for k, v in headers_of(msg) or ()}


def read(
    client_config: dict[str, Any],
    topic: str,
    starts: dict[int, int] | None = None,
    stops: dict[int, int] | None = None,
    timeout_s: float = 120.0,
    group: str = "orderbus.reader",
    committed: bool = True,
    on_progress: Callable[[], object] = lambda: None,
) -> Iterator[Message]:
    """Yield the committed records of `topic` from `starts` (default: the beginning of every
    partition) until each partition's end (or its offset in `stops`, exclusive). Raises
    IncompleteRead when the end is not reached in time, so a reader never mistakes a slow read
    for a short topic. `group` is never joined nor committed to, but librdkafka looks up its
    coordinator, which the principal must be allowed to describe: a worker passes its own.
    `committed=False` reads aborted and still-open transactional records too (diagnostics).
    A start offset the log no longer holds raises ReadError: the caller asked for records that are
    gone, and silently reading from elsewhere would hide it. `on_progress` is called after each
    fetch that yielded records."""
    consumer = Consumer(
        {
            **client_config,
            "group.id": group,
            "log_level": 3,
            "enable.auto.commit": False,
            # aborted writes never happened
            "isolation.level": "read_committed" if committed else "read_uncommitted",
            "enable.partition.eof": True,  # says when a partition is done
            "auto.offset.reset": "error",  # a start that is gone is an error
            "fetch.wait.max.ms": 10,  # ...without a 500 ms wait for it
        }
    )
    try:
        todo = _with_records(consumer, topic, starts, stops)
        if not todo:
            return
        consumer.assign([TopicPartition(topic, p, (starts or {}).get(p, BEGINNING)) for p in todo])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise IncompleteRead(
                    f"{topic}: partitions {sorted(todo)} not read to their end in {timeout_s:.0f}s"
                )
            msgs = consumer.consume(1000, timeout=0.05)
            if msgs:
                on_progress()
            for msg in msgs:
                p, err = msg.partition(), msg.error()
                if p not in todo:
                    continue
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(p)
                        continue
                    raise ReadError(f"reading {topic}: {err}", err)
                _, _, offset = coordinates(msg)
                until = (stops or {}).get(p)
                if until is not None and offset >= until:
                    todo.discard(p)
                    continue
                yield msg
                if until is not None and offset + 1 >= until:
                    todo.discard(p)
    finally:
        consumer.close()


def read_events(
    client_config: dict[str, Any],
    topic: str,
    decode: Callable[[Message], E],
    timeout_s: float = 120.0,
) -> Iterator[tuple[Message, E]]:
    """`read`, each record with what `decode` makes of it; a record it refuses (a DeadLetter:
    the worker dead-lettered it when it first read it, so it never counted) is skipped."""
    for msg in read(client_config, topic, timeout_s=timeout_s):
        try:
            event = decode(msg)
        except DeadLetter:
            continue
        yield msg, event


def _with_records(
    consumer: Consumer, topic: str, starts: dict[int, int] | None, stops: dict[int, int] | None
) -> set[int]:
    """The partitions of `topic` (those of `starts`, if given) that hold records between their
    start and stop."""
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    if meta.error is not None:
        raise KeyError(f"topic {topic} does not exist ({meta.error.str()})")
    todo: set[int] = set()
    for p in sorted(meta.partitions) if starts is None else sorted(starts):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        start = (starts or {}).get(p, BEGINNING)
        stop = (stops or {}).get(p, high)
        if high > low and stop > max(start, low):
            todo.add(p)
    return todo


def open_transactions(
    client_config: dict[str, Any], partitions: list[tuple[str, int]], timeout_s: float = 10.0
) -> dict[tuple[str, int], tuple[int, int] | None]:
    """(topic, partition) -> (last stable offset, log end) where a transaction is still open: its
    records are neither committed nor aborted yet. A committed-only read stops at the last stable
    offset, so whatever follows it, committed or not, stays unseen until that transaction ends.
    A partition whose offsets could not be read (its leader down, say) maps to None: unknown."""
    if not partitions:
        return {}
    admin = AdminClient({"log_level": 3, **client_config})
    latest = {
        # OffsetSpec's class methods are unannotated in confluent-kafka
        TopicPartition(t, p): OffsetSpec.latest()  # type: ignore[no-untyped-call]
        for t, p in partitions
    }
    # the end first: then a stable offset short of it means a transaction that was open when the
    # end was read is open still, never just a write or marker that landed between the two
    end = _offsets(admin, latest, IsolationLevel.READ_UNCOMMITTED, timeout_s)
    stable = _offsets(admin, latest, IsolationLevel.READ_COMMITTED, timeout_s)
    out: dict[tuple[str, int], tuple[int, int] | None] = {}
    for tp in partitions:
        tp_end, tp_stable = end.get(tp), stable.get(tp)
        if tp_end is None or tp_stable is None:
            out[tp] = None
        elif tp_stable < tp_end:
            out[tp] = (tp_stable, tp_end)
    return out


def _offsets(
    admin: AdminClient,
    latest: dict[TopicPartition, OffsetSpec],
    level: IsolationLevel,
    timeout_s: float,
) -> dict[tuple[str, int], int | None]:
    futures = admin.list_offsets(latest, isolation_level=level, request_timeout=timeout_s)
    out: dict[tuple[str, int], int | None] = {}
    for tp, future in futures.items():
        try:
            out[(tp.topic, tp.partition)] = future.result().offset
        except KafkaException:
            out[(tp.topic, tp.partition)] = None
    return out
