"""The tracker's fold over a stream of events, without faust: which orders it keeps open, and how
finished orders (and fragments) leave the table once their retention has passed, while an order
that never finished stays to be reported stuck."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from offline import offline_settings

from schemas.codec import encode
from schemas.events import Acked, DeadlinePassed, Line, OrderPlaced, StatusChanged, TxBegun, Voted
from topics.partitioner import partition_for
from workers.tracker.app import Tracker
from workers.tracker.metrics import TrackerMetrics
from workers.tracker.stages import OrderStages

TOPICS = {
    "orders.placed.v1": "orders.placed.v1",
    "tx.log.v1": "tx.log.v1",
    "orders.status.v1": "orders.status.v1",
}


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    timestamp: float  # seconds, as faust gives it
    headers: list


@dataclass
class Event:
    message: Message
    value: bytes


def tracker(retain_s: float = 60) -> Tracker:
    t = Tracker(
        app=None,
        settings=offline_settings(partitions=6),
        metrics=TrackerMetrics(),
        retain_s=retain_s,
    )
    t.kind = TOPICS
    t.order_to_stages = {}  # faust's table is a dict to the fold
    t.minute_to_counts = defaultdict(int)
    return t


def feed(t: Tracker, topic: str, event, at_s: float) -> None:
    value, headers = encode(event)
    t.handle(
        Event(Message(topic, partition_for(event.order_id.encode(), 6), 0, at_s, headers), value)
    )


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


def read_up_to(t, order_id, at_s):
    """Events of one order on all three topics at at_s: every topic's clock reaches at_s."""
    placed(t, order_id, at_s)
    feed(t, "tx.log.v1", TxBegun(order_id, ("inventory", "payment"), 5_000), at_s)
    feed(t, "orders.status.v1", StatusChanged(order_id, "PENDING", None, 0), at_s)


def test_finished_orders_and_fragments_expire_after_retention_but_unfinished_ones_stay():
    done, fragment, unfinished, later, last = same_partition_ids(5)
    t = tracker(retain_s=60)
    placed(t, done, 0.0)
    shipped(t, done, 1.0)
    feed(t, "tx.log.v1", Voted(fragment, "payment", "yes", None), 1.0)  # a re-read event only
    read_up_to(t, unfinished, 1.0)
    read_up_to(t, later, 30.0)  # not yet past the retention: all stay
    assert set(t.order_to_stages) == {done, fragment, unfinished, later}
    read_up_to(t, last, 62.0)  # every topic read 61 s past them
    assert set(t.order_to_stages) == {unfinished, later, last}
    assert t.open_orders == {unfinished, later, last}


def test_an_order_touched_again_is_kept_until_its_latest_event_is_old():
    order, other, last = same_partition_ids(3)
    t = tracker(retain_s=60)
    placed(t, order, 0.0)
    shipped(t, order, 50.0)
    read_up_to(t, other, 61.0)  # its placement is old, its shipping is not
    assert order in t.order_to_stages
    read_up_to(t, last, 111.0)
    assert order not in t.order_to_stages


def test_topics_read_out_of_step_do_not_expire_an_order_a_late_event_would_revive():
    # a catch-up reads orders.placed and orders.status far ahead of tx.log
    order, ahead = same_partition_ids(2)
    t = tracker(retain_s=60)
    placed(t, order, 0.0)
    shipped(t, order, 3.0)
    placed(t, ahead, 200.0)
    feed(t, "orders.status.v1", StatusChanged(ahead, "PENDING", None, 0), 200.0)
    assert order in t.order_to_stages  # tx.log has not been read past it yet
    feed(t, "tx.log.v1", TxBegun(order, ("inventory", "payment"), 5_000), 1.0)
    assert OrderStages.from_dict(t.order_to_stages[order]).terminal
    assert t.open_orders == {ahead}  # not revived as an unfinished order
    feed(t, "tx.log.v1", TxBegun(ahead, ("inventory", "payment"), 5_000), 200.0)
    assert order not in t.order_to_stages  # now every topic is past it


def test_a_rescan_rebuilds_what_may_expire_from_the_restored_table():
    done, later = same_partition_ids(2)
    t = tracker(retain_s=60)
    placed(t, done, 0.0)
    shipped(t, done, 1.0)
    restored = tracker(retain_s=60)  # a restart: the table comes from the changelog
    restored.order_to_stages = dict(t.order_to_stages)
    assert restored._open() == []  # the rescan runs with the first view
    read_up_to(restored, later, 62.0)
    assert done not in restored.order_to_stages


def test_events_that_mark_no_stage_leave_the_table_alone():
    t = tracker()
    feed(t, "tx.log.v1", Acked("a", "payment", "commit"), 1.0)
    feed(t, "tx.log.v1", DeadlinePassed("a", 5), 1.0)
    feed(t, "orders.status.v1", StatusChanged("a", "PENDING", None, 0), 1.0)
    assert t.order_to_stages == {} and t.open_orders == set()


def test_unfollowed_types_are_skipped_by_their_header_without_decoding():
    t = tracker()
    for kind in ("Acked", "DeadlinePassed"):
        t.handle(Event(Message("tx.log.v1", 0, 0, 1.0, [("type", kind.encode())]), b"{not json"))
    assert t.metrics.undecodable._metrics == {}  # nothing was decoded, so nothing failed
    t.handle(Event(Message("tx.log.v1", 0, 1, 1.0, [("type", b"Voted")]), b"{not json"))
    assert len(t.metrics.undecodable._metrics) == 1  # a followed type is decoded (and fails)
