import re

import pytest

from topics import catalogue
from topics.catalogue import ALL, DLQ_PREFIX, by_name


def test_names_are_unique_and_versioned():
    names = [t.name for t in ALL]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"[a-z]+(\.[a-z]+)+\.v\d+", name), name


@pytest.mark.parametrize("topic", ALL, ids=lambda t: t.name)
def test_every_topic_is_replicated(topic):
    # a policy lock, on purpose: three replicas with min.insync.replicas=2 is what lets a broker
    # die without losing an acknowledged record
    assert topic.replication == 3


def test_dead_letter_headers_are_distinct_and_start_with_the_prefix_replay_strips():
    names = [v for k, v in vars(catalogue).items() if k.startswith("DLQ_") and k != "DLQ_PREFIX"]
    assert len(names) == len(set(names)) > 0
    assert all(name.startswith(DLQ_PREFIX) for name in names)


def test_topics_are_found_by_name():
    for topic in ALL:
        assert by_name(topic.name) is topic
    with pytest.raises(KeyError):
        by_name("nope.v1")
