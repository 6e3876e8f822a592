"""The partition count is one setting for the whole deployment: topics are made with it, and a
worker whose setting disagrees with its topics refuses to start rather than take every record
for misplaced."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from pipeline import Pipeline

from topics.admin import wrong_partitions
from workers.main import run

pytestmark = pytest.mark.integration


def test_topics_are_made_with_the_settings_count(settings, tmp_path):
    p = Pipeline(settings, "n" + uuid.uuid4().hex[:8], tmp_path, partitions=3)  # no worker runs
    try:
        names = p.settings.names
        topics = tuple(p.topic_names)
        assert wrong_partitions(p.settings.kafka(), topics, names) == {}
        other = dataclasses.replace(names, partitions=2)
        assert wrong_partitions(p.settings.kafka(), topics, other) == dict.fromkeys(topics, 3)
    finally:
        p.close()


def test_a_worker_refuses_to_start_on_topics_of_another_count(settings, tmp_path, caplog):
    p = Pipeline(settings, "n" + uuid.uuid4().hex[:8], tmp_path, partitions=3)  # no worker runs
    try:
        wrong = dataclasses.replace(p.settings, partitions=2)
        assert run("shipping", 0, wrong) == 2
        assert "ORDERBUS_PARTITIONS is 2" in caplog.text and "has 3" in caplog.text
    finally:
        p.close()
