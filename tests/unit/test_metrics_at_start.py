"""A worker exports every dead-letter series it can produce from its start, at 0. A counter that
first appears at 1 shows Prometheus' increase() no rise, so DeadLettersIncreasing
(infra/prometheus/alerts.yml) would miss a new worker's first dead letters."""

from __future__ import annotations

import pytest

from schemas.errors import DeadLetter, UndecodableError
from topics.catalogue import ACCESS, ORDERS_DLQ
from workers import main
from workers.runtime.metrics import DEAD_LETTERS, Metrics
from workers.runtime.settings import Settings
from workers.runtime.signing import AUTHORS, ForgedEventError


def every_reason() -> set[str]:
    """The reason of every DeadLetter class loaded, found from the classes: a class added later
    counts with no change here."""
    found, todo = set(), DeadLetter.__subclasses__()
    while todo:
        cls = todo.pop()
        found.add(cls.reason)
        todo += cls.__subclasses__()
    return found


@pytest.fixture
def settings(tmp_path) -> Settings:
    env = {
        "ORDERBUS_HOME": str(tmp_path),
        "ORDERBUS_KAFKA_SECURITY": "plaintext",
        "ORDERBUS_INTAKE_MAX_BACKLOG": "0",  # no back-pressure thread: nothing here reaches Kafka
    }
    for author in AUTHORS:
        key = tmp_path / f"{author}.key"
        key.write_text(f"a test key of {author}, long enough")
        env[f"ORDERBUS_SIGNING_KEY_{author.upper()}_FILE"] = str(key)
    return Settings.from_env(env)


def started(worker: str, settings: Settings, monkeypatch) -> Metrics:
    """The metrics of `worker` as `workers.main.run` leaves them when its loop starts: the loop is
    a stand-in that only keeps them."""
    kept = []

    class Started:
        def __init__(self, *args):
            kept.extend(a for a in args if isinstance(a, Metrics))

        def run(self) -> None:
            pass

        def stop(self, *_) -> None:
            pass

    monkeypatch.setattr(main, "Loop", Started)
    monkeypatch.setattr(main, "wrong_partitions", lambda *_: {})  # no cluster here to ask
    monkeypatch.setattr(main.signal, "signal", lambda *_: None)
    monkeypatch.setattr(main.logging, "basicConfig", lambda **_: None)
    assert main.run(worker, 0, settings) == 0
    [metrics] = kept
    return metrics


@pytest.mark.parametrize("worker", main.PIPELINE)
def test_a_worker_starts_with_every_dead_letter_series_at_zero(worker, settings, monkeypatch):
    metrics = started(worker, settings, monkeypatch)
    reasons = every_reason()
    assert {UndecodableError.reason, ForgedEventError.reason} <= reasons
    expected = reasons if ORDERS_DLQ in ACCESS[worker].writes else set()
    exported = {
        reason: metrics.registry.get_sample_value(
            DEAD_LETTERS, {"worker": worker, "reason": reason}
        )
        for reason in reasons
    }
    assert {r for r, v in exported.items() if v == 0} == expected, exported
