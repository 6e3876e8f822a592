"""Which dead letters a replay re-publishes, and with which headers."""

from __future__ import annotations

import pytest

from topics.catalogue import (
    DLQ_HEADERS_DIGESTED_FROM,
    DLQ_KEY_DIGESTED_FROM,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TOPIC,
    DLQ_TRUNCATED_FROM,
)
from topics.redrive import COUNT, DlqFilter, Letter, ReplayLog, plan_dlq

SRC = "orders.placed.v1"


def letter(p, o, ts=0, reason="unknown_event", count=None, source=SRC, extra=()):
    headers = [("type", b"Foo"), *extra]
    if count is not None:
        headers.append((COUNT, str(count).encode()))
    headers += [
        (DLQ_REASON, reason.encode()),
        (DLQ_TOPIC, source.encode()),
        (DLQ_PARTITION, b"0"),
        (DLQ_OFFSET, b"7"),
    ]
    return Letter(p, o, ts, f"k{p}".encode(), b"{}", tuple(headers))


def ids(letters):
    return [l.id for l in letters]


def test_selects_in_order_per_partition_merged_by_time():
    letters = [letter(0, 0, ts=5), letter(0, 1, ts=1), letter(1, 0, ts=3)]
    plan = plan_dlq(letters, set(), {SRC}, DlqFilter())
    # partition 0 keeps its offset order even though its second letter is older
    assert ids(plan.selected) == ["1:0", "0:0", "0:1"]
    assert plan.by_reason == {"unknown_event": 3}


@pytest.mark.parametrize(
    "f, expected",
    [
        (DlqFilter(reason="undecodable"), ["0:1"]),
        (DlqFilter(since_ms=20), ["0:2"]),
        (DlqFilter(until_ms=20), ["0:0", "0:1"]),
        (DlqFilter(limit=2), ["0:0", "0:1"]),
    ],
)
def test_filters(f, expected):
    letters = [letter(0, 0, ts=10), letter(0, 1, ts=15, reason="undecodable"), letter(0, 2, ts=20)]
    assert ids(plan_dlq(letters, set(), {SRC}, f).selected) == expected


def test_parks_at_the_maximum_and_skips_what_was_replayed():
    letters = [letter(0, 0, count=3), letter(0, 1, count=2), letter(0, 2)]
    plan = plan_dlq(letters, {"0:2"}, {SRC}, DlqFilter(max_replays=3))
    assert ids(plan.selected) == ["0:1"]
    assert [(l.id, "3 times" in why) for l, why in plan.parked] == [("0:0", True)]
    assert ids(plan.done) == ["0:2"]


@pytest.mark.parametrize("forged", [b"-1", b"x", b"99999999", b""])
def test_an_unreadable_count_parks_rather_than_trusts(forged):
    bad = Letter(
        0, 0, 0, b"k", b"{}", ((COUNT, forged), (DLQ_REASON, b"r"), (DLQ_TOPIC, SRC.encode()))
    )
    plan = plan_dlq([bad], set(), {SRC}, DlqFilter())
    assert plan.selected == [] and "unreadable" in plan.parked[0][1]


def test_the_highest_of_repeated_counts_counts():
    l = Letter(0, 0, 0, b"k", b"{}", ((COUNT, b"0"), (COUNT, b"3"), (DLQ_TOPIC, SRC.encode())))
    assert l.count() == 3


def test_a_source_outside_the_pipeline_is_parked():
    # a forged dlq.topic before the worker's own one loses (the last header wins)...
    honest = letter(0, 0, extra=((DLQ_TOPIC, b"tx.log.v1"),))
    assert honest.source == SRC
    # ...and a letter naming a topic that is not ours is never re-published
    plan = plan_dlq([letter(0, 1, source="elsewhere")], set(), {SRC}, DlqFilter())
    assert plan.selected == [] and "not one of" in plan.parked[0][1]


@pytest.mark.parametrize(
    "cut", [DLQ_KEY_DIGESTED_FROM, DLQ_HEADERS_DIGESTED_FROM, DLQ_TRUNCATED_FROM]
)
def test_a_letter_that_did_not_fit_whole_is_parked(cut):
    # its key would be a digest, its headers gone or its value a prefix: not the record refused
    plan = plan_dlq([letter(0, 0, extra=((cut, b"98000"),))], set(), {SRC}, DlqFilter())
    assert plan.selected == [] and "not the original" in plan.parked[0][1]


def test_replay_headers_drop_ours_and_carry_the_new_count():
    l = letter(0, 0, count=1, extra=(("trace", b"t1"),))
    assert l.replay_headers(2) == [("type", b"Foo"), ("trace", b"t1"), (COUNT, b"2")]


def test_the_log_ignores_a_line_torn_by_a_kill(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"dlq": "0:1"}\n{"dlq": "0:2"}\n{"dlq": "0:')
    assert ReplayLog(path).load() == {"0:1", "0:2"}
    assert ReplayLog(tmp_path / "none.jsonl").load() == set()
