"""What the watchdog counts as a stall, on a clock the test moves; and that the consumer's poll
interval covers a batch that waits out its database."""

from __future__ import annotations

import pytest

from workers.runtime.clients import WATCH_EVERY_S, LoopConfig, consumer_config
from workers.runtime.db import RETRY_S
from workers.runtime.liveness import Liveness
from workers.runtime.settings import Settings

A, B = ("t", 0), ("t", 1)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# each step: (seconds passing first, what happens); the expected stall after the last one
STORIES = {
    "an owned partition that never progresses stalls from its assignment": (
        [(0, "assign A B"), (10, "progress B"), (25, "progress B")],
        35,
    ),
    "committed batches and caught-up rounds keep every partition live": (
        [(0, "assign A B"), (20, "progress A B"), (20, "progress A B")],
        0,
    ),
    "polling empty is no progress": ([(0, "assign A"), (10, "progress"), (10, "progress")], 20),
    "a revoked partition no longer counts": (
        [(0, "assign A B"), (5, "progress B"), (20, "revoke A")],
        20,
    ),
    "a partition taken back later starts afresh": (
        [(0, "assign A"), (40, "revoke A"), (1, "assign A"), (4, "progress")],
        4,
    ),
    "progress on a partition no longer owned does not bring it back": (
        [(0, "assign A B"), (0, "revoke A"), (10, "progress A"), (5, "progress B")],
        0,
    ),
    "owning nothing, a finished round is enough": ([(30, "progress"), (2, "progress")], 0),
    "owning nothing, a round that does not finish stalls": ([(3, "progress"), (40, "none")], 40),
    "retrying the database is a wait, counted from its last retry": (
        [(0, "assign A"), (10, "waiting"), (60, "waiting"), (50, "waiting"), (7, "none")],
        7,
    ),
    "after the database is back, the partition must progress again": (
        [(0, "assign A"), (20, "waiting"), (1, "progress"), (31, "none")],
        32,
    ),
}


@pytest.mark.parametrize("story", STORIES)
def test_stall(story):
    steps, expected = STORIES[story]
    clock = Clock()
    live = Liveness(clock)
    for passing, what in steps:
        clock.now += passing
        verb, *names = what.split()
        keys = [{"A": A, "B": B}[n] for n in names]
        {
            "assign": live.assigned,
            "revoke": live.revoked,
            "progress": live.progressed,
            "waiting": lambda _: live.waiting(),
            "none": lambda _: None,
        }[verb](keys)
    assert live.stalled_s() == pytest.approx(expected)


def test_owned_is_what_was_assigned_and_not_revoked():
    live = Liveness(Clock())
    live.assigned([A, B])
    live.revoked([A])
    live.assigned([("u", 3)])
    assert sorted(live.owned()) == [B, ("u", 3)]


def test_a_batch_waiting_out_its_database_stays_in_the_group(tmp_path):
    # the longest a live worker goes between polls: a stall short of the watchdog's limit, the
    # whole database retry budget, then another such stall
    settings = Settings.from_env(
        {"ORDERBUS_HOME": str(tmp_path), "ORDERBUS_KAFKA_SECURITY": "plaintext"}
    )
    cfg = LoopConfig(group="g", instance="0")
    longest_s = RETRY_S + 2 * (cfg.stall_s + WATCH_EVERY_S)
    assert consumer_config(settings, cfg)["max.poll.interval.ms"] >= longest_s * 1000
