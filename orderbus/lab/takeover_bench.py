"""How long a new coordinator takes to own a tx.log partition, against the history behind it and
what is open on it.

Each case runs in a sandbox (own topics and databases, no workers). Its coordinator database holds
`history` finished orders and `open` undecided ones (both voted yes, no decision) on partition 0,
saved up to offset 0; tx.log's partition 0 then holds a second of traffic at 100 orders/s (TxBegun
and both votes of 100 orders), and the group's committed offset, written as a coordinator writes
it, is its end. Taking over loads the open rows and re-folds that second: what an instance does
when a partition moves to it after a crash. Each case is timed `repeat` times (median reported).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable

from confluent_kafka import Consumer, Producer, TopicPartition

from orderbus.lab.sandbox import Sandbox
from schemas import codec
from schemas.events import PARTICIPANTS, Event, Outcome, TxBegun, Voted
from topics.partitioner import partition_for
from workers.coordinator import store as coordinator_store
from workers.coordinator.fold import Tx
from workers.coordinator.worker import FOLDED, take_over
from workers.runtime.db import Cursor, Database
from workers.runtime.settings import Settings
from workers.runtime.signing import author, signed_as

TAIL_ORDERS = 100


def _tx(oid: str, outcome: Outcome | None) -> Tx:
    votes = tuple((p, "yes", None) for p in PARTICIPANTS)
    acks = frozenset((p, outcome) for p in PARTICIPANTS) if outcome else frozenset()
    return Tx(
        oid,
        True,
        PARTICIPANTS,
        0,
        votes,
        outcome,
        None,
        acks,
        ((outcome, None),) if outcome else (),
    )


def _fill_store(sb: Sandbox, history: int, open_: int, log: Callable[[str], None]) -> None:
    kinds: tuple[tuple[Outcome | None, int, bool], ...] = (
        ("commit", history, True),
        (None, open_, False),
    )

    def fill(cur: Cursor) -> None:
        done = 0
        for outcome, n, finished in kinds:
            for start in range(0, n, 100_000):
                end = min(n, start + 100_000)
                ids = (f"{'h' if finished else 'o'}-{i}" for i in range(start, end))
                coordinator_store.bulk_load(
                    cur, ((oid, 0, 0, finished, _tx(oid, outcome)) for oid in ids)
                )
                done += end - start
                log(f"  store: {done:,} of {history + open_:,} rows")
        coordinator_store.save(cur, [], {0: 0})  # the rows are folded up to offset 0
        coordinator_store.analyze(cur)

    Database.once(sb.settings.dsns[coordinator_store.DATABASE], fill)


def _write_tail(sb: Sandbox) -> int:
    producer = Producer(sb.settings.kafka(**{"acks": "all", "linger.ms": 20}))
    # ids whose events sit on partition 0, where the readers take them
    tail = (
        oid
        for oid in (f"t-{i}" for i in itertools.count())
        if partition_for(oid.encode(), sb.settings.partitions) == 0
    )
    for oid in itertools.islice(tail, TAIL_ORDERS):
        events: list[Event] = [
            TxBegun(oid, PARTICIPANTS, 0),
            *(Voted(oid, p, "yes", None) for p in PARTICIPANTS),
        ]
        for event in events:
            value, plain = codec.encode(event)
            signed = signed_as(
                sb.settings, author(event), sb.tx_log_topic, oid.encode(), value, plain
            )
            producer.produce(
                sb.tx_log_topic, key=oid.encode(), value=value, headers=signed, partition=0
            )
    if producer.flush(30):
        raise TimeoutError("tx.log tail not acknowledged")
    group = sb.settings.names.group("coordinator")
    consumer = Consumer(sb.settings.kafka(**{"group.id": group, "enable.auto.commit": False}))
    try:
        end = consumer.get_watermark_offsets(TopicPartition(sb.tx_log_topic, 0), timeout=10)[1]
        consumer.commit(
            offsets=[TopicPartition(sb.tx_log_topic, 0, end, metadata=FOLDED)], asynchronous=False
        )
    finally:
        consumer.close()
    return end


def case(
    settings: Settings,
    history: int,
    open_: int,
    repeat: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    with Sandbox(settings) as sb:
        t0 = time.monotonic()
        _fill_store(sb, history, open_, log)
        tail = _write_tail(sb)
        setup_s = time.monotonic() - t0
        group = sb.settings.names.group("coordinator")
        times: list[float] = []
        held = 0
        for _ in range(repeat):
            with Database(sb.settings.dsns[coordinator_store.DATABASE]) as db:
                t1 = time.monotonic()
                taken, _ = take_over(sb.settings, db, group, sb.tx_log_topic, [0])
                times.append(time.monotonic() - t1)
            held = len(taken[0].open)
        return {
            "history": history,
            "open": open_,
            "tail_records": tail,
            "open_after": held,
            "takeover_s": round(statistics.median(times), 3),
            "takeover_max_s": round(max(times), 3),
            "setup_s": round(setup_s, 1),
        }


def run(
    settings: Settings,
    histories: list[int],
    opens: list[int],
    repeat: int = 3,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    rows = []
    for h in histories:
        for o in opens:
            log(f"history {h:,}, open {o:,}")
            rows.append(case(settings, h, o, repeat, log))
            log(f"  took over in {rows[-1]['takeover_s']} s (median of {repeat})")
    return rows


def render(rows: list[dict[str, float]]) -> str:
    lines = [
        f"{'history':>10} {'open':>6} {'tail':>6} {'open after':>10} {'takeover s':>10} "
        f"{'max s':>7}"
    ]
    for r in rows:
        lines.append(
            f"{r['history']:>10,} {r['open']:>6,} {r['tail_records']:>6} "
            f"{r['open_after']:>10,} {r['takeover_s']:>10} {r['takeover_max_s']:>7}"
        )
    return "\n".join(lines)
