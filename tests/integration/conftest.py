from __future__ import annotations

import psycopg2
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from infra.postgres import databases
from topics.admin import delete
from workers.runtime.settings import SettingsError


@pytest.fixture(scope="session", autouse=True)
def cluster_reachable(settings):
    """One look at the cluster before the first integration test: without one, every test would
    fail on its own after its own timeouts; this stops the run at once and says why."""
    where = f"Kafka at {settings.bootstrap} and PostgreSQL on port {settings.pg_port}"
    try:
        AdminClient(settings.kafka(log_level=0)).list_topics(timeout=15)
        psycopg2.connect(settings.dsns[databases.DATABASE["intake"]]).close()
    except (KafkaException, SettingsError, psycopg2.Error) as e:
        pytest.exit(
            f"no cluster to test against ({where}): {e}; run `orderbus up` first (make test does)",
            3,
        )


@pytest.fixture
def make_topic(settings, unique):
    """Create a test's own topic (RF 3, min ISR 2 on three brokers) and delete it afterwards."""
    made = []

    def make(suffix: str = "t", partitions: int = 6) -> str:
        name = f"{unique}.{suffix}"
        admin = AdminClient(settings.kafka())
        rf = min(3, len(admin.list_topics(timeout=10).brokers))
        fut = admin.create_topics(
            [
                NewTopic(
                    name, partitions, rf, config={"min.insync.replicas": str(2 if rf == 3 else 1)}
                )
            ]
        )[name]
        fut.result(timeout=30)
        made.append(name)
        return name

    yield make
    if made:
        delete(settings.kafka(), made)


@pytest.fixture
def own_database(settings, unique):
    """A factory: a database of the given kind (`orders`, `coordinator`, ...), migrated as the
    service's own and made for this test alone, as a DSN of its service role; dropped afterwards."""
    layout, made = settings.layout(), []

    def make(service: str) -> str:
        name = f"{unique}_{service}"
        databases.ensure(layout, name, service)
        made.append(name)
        return databases.dsn(layout, name)

    yield make
    for name in made:
        databases.drop(layout, name)
        (layout.secrets_dir / f"pg-{name}.password").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def pipe(settings, tmp_path_factory):
    """A running sandbox pipeline (own topics, databases, workers; deadline 4 s), shared by the
    tests of one module."""
    import uuid

    from pipeline import Pipeline

    p = Pipeline(
        settings, "m" + uuid.uuid4().hex[:8], tmp_path_factory.mktemp("pipe"), deadline_ms=4000
    )
    p.start()
    yield p
    p.close()
