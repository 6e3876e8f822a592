"""Settings from the environment: defaults, accepted values, and refusals that
name the variable."""

from __future__ import annotations

import pytest

from workers.runtime.settings import TRACKER_GRACE_S, TRACKER_RETAIN_S, Settings, SettingsError

GRACE, RETAIN = "ORDERBUS_TRACKER_GRACE_S", "ORDERBUS_TRACKER_RETAIN_S"


def settings(tmp_path, **env) -> Settings:
    return Settings.from_env({"ORDERBUS_HOME": str(tmp_path), **env})


def test_defaults(tmp_path):
    s = settings(tmp_path)
    assert (s.tracker_grace_s, s.tracker_retain_s) == (TRACKER_GRACE_S, TRACKER_RETAIN_S)
    s = settings(tmp_path, **{GRACE: "", RETAIN: ""})
    assert (s.tracker_grace_s, s.tracker_retain_s) == (TRACKER_GRACE_S, TRACKER_RETAIN_S)


@pytest.mark.parametrize(
    "name, raw, expected",
    [(RETAIN, "30", 30.0), (RETAIN, "0.5", 0.5), (GRACE, "0", 0.0), (GRACE, "12.5", 12.5)],
)
def test_accepted(tmp_path, name, raw, expected):
    s = settings(tmp_path, **{name: raw})
    assert (s.tracker_grace_s if name == GRACE else s.tracker_retain_s) == expected


@pytest.mark.parametrize(
    "name, raw", [(RETAIN, "0"), (GRACE, "-1"), (RETAIN, "soon"), (GRACE, "nan")]
)
def test_refused_with_the_variable_named(tmp_path, name, raw):
    with pytest.raises(SettingsError, match=f"{name}=.* must be"):
        settings(tmp_path, **{name: raw})


@pytest.mark.parametrize(
    "name, raw, expected",
    [
        ("ORDERBUS_LOG_LEVEL", "debug", ("DEBUG", "", 5000)),
        (
            "ORDERBUS_CRASH",
            "payment:after_db_commit:0.5",
            ("INFO", "payment:after_db_commit:0.5", 5000),
        ),
        ("ORDERBUS_INTAKE_MAX_BACKLOG", "0", ("INFO", "", 0)),
    ],
)
def test_every_other_variable_read_once_at_start(tmp_path, name, raw, expected):
    s = settings(tmp_path, **{name: raw})
    assert (s.log_level, s.crash, s.intake_max_backlog) == expected


@pytest.mark.parametrize(
    "name, raw",
    [
        ("ORDERBUS_LOG_LEVEL", "loud"),
        ("ORDERBUS_CRASH", "payment:nowhere:0.5"),
        ("ORDERBUS_CRASH", "payment:after_db_commit:2"),
        ("ORDERBUS_INTAKE_MAX_BACKLOG", "-1"),
        ("ORDERBUS_PARTITIONS", "0"),
        ("ORDERBUS_PARTITIONS", "two"),
    ],
)
def test_a_bad_value_stops_the_start_with_the_variable_named(tmp_path, name, raw):
    with pytest.raises(SettingsError, match=name):
        settings(tmp_path, **{name: raw})


def test_the_partition_count_is_the_clusters_unless_set(tmp_path):
    """A new deployment gets the catalogue's count; a local cluster keeps the count `up` made it
    with, and one made before the count was recorded had 6; the variable overrides both."""
    from topics.catalogue import PARTITIONS

    assert settings(tmp_path).partitions == PARTITIONS
    assert settings(tmp_path).names.partitions == PARTITIONS
    (tmp_path / "cluster.json").write_text('{"brokers": 3}')
    assert settings(tmp_path).partitions == 6
    (tmp_path / "cluster.json").write_text('{"brokers": 3, "partitions": 2}')
    assert settings(tmp_path).partitions == 2
    assert settings(tmp_path, ORDERBUS_PARTITIONS="4").names.partitions == 4
