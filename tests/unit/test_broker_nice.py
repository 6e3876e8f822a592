"""The brokers' CPU priority: ORDERBUS_KAFKA_NICE, else raised where that is allowed."""

from __future__ import annotations

import pytest

from infra.kafka import cluster
from infra.variables import SettingsError


@pytest.mark.parametrize("may, expected", [(True, -10), (False, 0)])
def test_default_is_raised_only_where_allowed(monkeypatch, may, expected):
    monkeypatch.setattr(cluster, "may_raise_priority", lambda: may)
    assert cluster.nice({}) == expected
    assert cluster.nice({"ORDERBUS_KAFKA_NICE": ""}) == expected


@pytest.mark.parametrize("raw, expected", [("0", 0), ("5", 5), ("-20", -20), ("19", 19)])
def test_an_explicit_niceness_is_taken(raw, expected):
    assert cluster.nice({"ORDERBUS_KAFKA_NICE": raw}) == expected


@pytest.mark.parametrize("raw", ["high", "-21", "20", "1.5"])
def test_a_bad_niceness_is_refused_by_name(raw):
    with pytest.raises(SettingsError, match="ORDERBUS_KAFKA_NICE"):
        cluster.nice({"ORDERBUS_KAFKA_NICE": raw})
