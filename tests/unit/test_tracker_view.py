"""The tracker's fold over a stream of events, without faust: which orders it keeps open, and how
finished orders (and fragments) leave the table once their retention has passed, while an order
that never finished stays to be reported stuck."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from schemas.codec import encode
from schemas.events import (Acked, DeadlinePassed, Line, OrderPlaced, StatusChanged, TxBegun,
                            Voted)
from topics.partition import partition_for
from workers.tracker.app import Tracker
from workers.tracker.metrics import TrackerMetrics

TOPICS = {"orders.placed.v1": "orders.placed.v1", "tx.log.v1": "tx.log.v1",
          "orders.status.v1": "orders.status.v1"}


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    timestamp: float        # seconds, as faust gives it
    headers: list


@dataclass
class Event:
    message: Message
    value: bytes


def tracker(retain_s: float = 60) -> Tracker:
    t = Tracker(app=None, settings=None, metrics=TrackerMetrics(), retain_s=retain_s)
    t.kind = TOPICS
    t.order_to_stages = {}                      # faust's table is a dict to the fold
    t.minute_to_counts = defaultdict(int)
    return t


def feed(t: Tracker, topic: str, event, at_s: float) -> None:
    value, headers = encode(event)
    t.handle(Event(Message(topic, partition_for(event.order_id.encode(), 6), 0, at_s, headers),
                   value))


def placed(t, order_id, at_s):
    feed(t, "orders.placed.v1", OrderPlaced(order_id, "c", (Line("s", 1, 100),), "EUR", 100), at_s)


def shipped(t, order_id, at_s):
    feed(t, "orders.status.v1", StatusChanged(order_id, "SHIPPED", None, 0), at_s)


def same_partition_ids(n: int) -> list[str]:
    ids = (f"o-{i}" for i in range(10_000))
    return [o for o in ids if partition_for(o.encode(), 6) == 0][:n]


def test_open_orders_follow_the_fold():
    t = tracker()
    placed(t, "a", 1.0)
    placed(t, "b", 1.0)
    shipped(t, "a", 2.0)
    assert t.open_orders == {"b"}
    assert [o.order_id for o in t._open()] == ["b"]


def test_finished_orders_and_fragments_expire_after_retention_but_unfinished_ones_stay():
    done, fragment, unfinished, later, last = same_partition_ids(5)
    t = tracker(retain_s=60)
    placed(t, done, 0.0)
    shipped(t, done, 1.0)
    feed(t, "tx.log.v1", Voted(fragment, "payment", "yes", None), 1.0)   # a re-read event only
    placed(t, unfinished, 1.0)
    feed(t, "tx.log.v1", TxBegun(unfinished, ("inventory", "payment"), 5_000), 1.0)
    placed(t, later, 30.0)                     # not yet past the retention: all stay
    assert set(t.order_to_stages) == {done, fragment, unfinished, later}
    placed(t, last, 62.0)                      # an event of the same partition, 61 s on
    assert set(t.order_to_stages) == {unfinished, later, last}
    assert t.open_orders == {unfinished, later, last}


def test_an_order_touched_again_is_kept_until_its_latest_event_is_old():
    order, other, last = same_partition_ids(3)
    t = tracker(retain_s=60)
    placed(t, order, 0.0)
    shipped(t, order, 50.0)
    placed(t, other, 61.0)                     # its placement is old, its shipping is not
    assert order in t.order_to_stages
    placed(t, last, 111.0)
    assert order not in t.order_to_stages


def test_a_rescan_rebuilds_what_may_expire_from_the_restored_table():
    done, later = same_partition_ids(2)
    t = tracker(retain_s=60)
    placed(t, done, 0.0)
    shipped(t, done, 1.0)
    restored = tracker(retain_s=60)             # a restart: the table comes from the changelog
    restored.order_to_stages = dict(t.order_to_stages)
    assert restored._open() == []               # the rescan runs with the first view
    placed(restored, later, 62.0)
    assert done not in restored.order_to_stages


def test_events_that_mark_no_stage_leave_the_table_alone():
    t = tracker()
    feed(t, "tx.log.v1", Acked("a", "payment", "commit"), 1.0)
    feed(t, "tx.log.v1", DeadlinePassed("a", 5), 1.0)
    feed(t, "orders.status.v1", StatusChanged("a", "PENDING", None, 0), 1.0)
    assert t.order_to_stages == {} and t.open_orders == set()
