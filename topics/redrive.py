"""Re-drive dead letters to their source topic (`orderbus replay dlq`).

The decision (what to replay) is a pure function over plain values (`plan_dlq`); the classes
around it only read and write the cluster. Group offset resets are in topics/group_reset.py.

Dead-letter re-drive, and why it is safe to repeat or to kill half-way:
- every re-published letter is remembered in a JSON-lines log keyed by the dead letter's
  `partition:offset`, appended only *after* the cluster acknowledged the produce; a second run
  skips what the log holds;
- a SIGKILL between the acknowledgement and the log write re-publishes at most the letters whose
  acks were not yet logged. That is harmless: intake treats an order republished with the same
  content as a no-op (the order id is the natural key of every effect), and the tx.log fold ignores
  a repeated begin, vote or ack. No effect is lost (the log is written after the ack, never before)
  and none is doubled.
- `replay.count` only limits how often one letter goes round; it is re-written by us (never
  copied), a letter whose count is unreadable is parked rather than trusted, and no worker reads it.
"""

from __future__ import annotations

import heapq
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, TextIO

from confluent_kafka import KafkaError, Message, Producer

from topics.catalogue import (
    DLQ_HEADERS_DIGESTED_FROM,
    DLQ_KEY_DIGESTED_FROM,
    DLQ_PREFIX,
    DLQ_REASON,
    DLQ_TOPIC,
    DLQ_TRUNCATED_FROM,
    REPLAY_COUNT,
)
from topics.producer import PRODUCER_DEFAULTS
from topics.read import coordinates, headers_of, read

COUNT = REPLAY_COUNT


class ReplayError(RuntimeError):
    """A replay that must not go ahead: a message for the operator (exit 2)."""


# -- dead letters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Letter:
    """One record of the dead-letter topic, as read."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str | None:
        """The last value of a header (the worker appends its dlq.* headers after any the
        message arrived with, so the last one is the worker's)."""
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return None if found is None else bytes(found).decode("utf-8", errors="replace")

    @property
    def reason(self) -> str:
        return self.header(DLQ_REASON) or "unknown"

    @property
    def source(self) -> str | None:
        return self.header(DLQ_TOPIC)

    @property
    def whole(self) -> bool:
        """False when the original did not fit in a dead letter: its key or headers were
        replaced by a digest, or its value truncated."""
        return not any(
            self.header(h)
            for h in (DLQ_KEY_DIGESTED_FROM, DLQ_HEADERS_DIGESTED_FROM, DLQ_TRUNCATED_FROM)
        )

    def count(self) -> int | None:
        """Re-drives so far; None when a replay.count header is unreadable (not trusted)."""
        counts = []
        for k, v in self.headers:
            if k != COUNT:
                continue
            text = (v or b"").decode("ascii", errors="replace")
            if not text.isdigit() or len(text) > 6:
                return None
            counts.append(int(text))
        return max(counts, default=0)

    def replay_headers(self, count: int) -> list[tuple[str, bytes | None]]:
        """The original headers minus ours (dlq.*, replay.count), plus the new count."""
        kept = [(k, v) for k, v in self.headers if not k.startswith(DLQ_PREFIX) and k != COUNT]
        return kept + [(COUNT, str(count).encode())]


@dataclass(frozen=True)
class DlqFilter:
    reason: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int | None = None
    max_replays: int = 3


@dataclass
class DlqPlan:
    selected: list[Letter] = field(default_factory=list)  # to re-publish, in order
    parked: list[tuple[Letter, str]] = field(default_factory=list)  # (letter, why)
    done: list[Letter] = field(default_factory=list)  # already in the replay log
    by_reason: Counter[str] = field(default_factory=Counter)  # every letter in the topic
    skipped_by_filter: int = 0
    over_limit: int = 0


def plan_dlq(
    letters: list[Letter], replayed: set[str], allowed_sources: set[str], f: DlqFilter
) -> DlqPlan:
    """Which dead letters to re-publish. `letters` in offset order per partition; the result
    keeps that order per partition (so per key), merged across partitions by timestamp."""
    plan = DlqPlan()
    per_partition: dict[int, list[Letter]] = {}
    for letter in letters:
        per_partition.setdefault(letter.partition, []).append(letter)
    merged = heapq.merge(*per_partition.values(), key=lambda l: l.timestamp_ms)
    for letter in merged:
        plan.by_reason[letter.reason] += 1
        if (
            (f.reason is not None and letter.reason != f.reason)
            or (f.since_ms is not None and letter.timestamp_ms < f.since_ms)
            or (f.until_ms is not None and letter.timestamp_ms >= f.until_ms)
        ):
            plan.skipped_by_filter += 1
            continue
        if letter.id in replayed:
            plan.done.append(letter)
            continue
        count = letter.count()
        if count is None:
            plan.parked.append((letter, "unreadable replay.count header"))
        elif count >= f.max_replays:
            plan.parked.append((letter, f"replayed {count} times already (max {f.max_replays})"))
        elif not letter.whole:
            # re-publishing a digest or a prefix would be another record than the one refused
            plan.parked.append(
                (letter, "not the original record: it did not fit in a dead letter whole")
            )
        elif letter.source not in allowed_sources:
            plan.parked.append(
                (letter, f"source topic {letter.source!r} is not one of this pipeline's topics")
            )
        elif f.limit is not None and len(plan.selected) >= f.limit:
            plan.over_limit += 1
        else:
            plan.selected.append(letter)
    return plan


def read_letters(client_config: dict[str, Any], dlq_topic: str) -> list[Letter]:
    """Every committed record of the dead-letter topic."""
    try:
        return [_letter(m) for m in read(client_config, dlq_topic)]
    except KeyError as e:
        raise ReplayError(str(e.args[0])) from None


def _letter(msg: Message) -> Letter:
    _, partition, offset = coordinates(msg)
    return Letter(
        partition, offset, msg.timestamp()[1], msg.key(), msg.value(), tuple(headers_of(msg) or ())
    )


class ReplayLog:
    """What was re-published, one JSON line per dead letter, appended after the ack."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> set[str]:
        if not self.path.exists():
            return set()
        done = set()
        for line in self.path.read_text().splitlines():
            try:
                done.add(json.loads(line)["dlq"])
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill mid-write: its letter may go once more
        return done

    def open(self) -> TextIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.path, "a", encoding="utf-8")


def redrive(
    client_config: dict[str, Any],
    letters: list[Letter],
    log: ReplayLog,
    rate: float | None = None,
    progress: Callable[[int], object] = lambda n: None,
) -> tuple[int, list[str]]:
    """Re-publish `letters` in order; returns (acknowledged, errors). Each ack is logged (and
    flushed to disk) before the next poll returns."""
    producer = Producer({**PRODUCER_DEFAULTS, **client_config})
    acked, errors = 0, []
    with log.open() as out:

        def delivered(err: KafkaError | None, msg: Message, letter: Letter) -> None:
            nonlocal acked
            if err is not None:
                errors.append(f"{letter.id}: {err.str()}")
                return
            out.write(
                json.dumps(
                    {
                        "dlq": letter.id,
                        "topic": msg.topic(),
                        "partition": msg.partition(),
                        "offset": msg.offset(),
                        "count": (letter.count() or 0) + 1,
                        "at_ms": int(time.time() * 1000),
                    }
                )
                + "\n"
            )
            out.flush()
            os.fsync(out.fileno())
            acked += 1
            progress(acked)

        t0 = time.monotonic()
        for i, letter in enumerate(letters):
            while rate and (wait := t0 + i / rate - time.monotonic()) > 0:
                producer.poll(min(wait, 0.05))  # serves acks (and so the log) while pacing
            headers = letter.replay_headers((letter.count() or 0) + 1)
            source = letter.source
            assert source is not None, "plan_dlq parks a letter with no source topic"
            while True:
                try:
                    # the stubs want a list of (str, str | bytes | None): a list of the narrower
                    # (str, bytes | None) is as good, but list is invariant (Sequence would do)
                    producer.produce(
                        source,
                        key=letter.key,
                        value=letter.value,
                        headers=headers,  # type: ignore[arg-type]
                        on_delivery=partial(delivered, letter=letter),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        left = producer.flush(60)
    if left:
        errors.append(
            f"{left} messages not acknowledged in 60 s (not logged: a rerun retries them)"
        )
    return acked, errors
