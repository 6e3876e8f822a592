"""Authentication and ACLs on the real cluster: every service principal can do its own job and is
refused (with an authorisation error, not a timeout) one read and one write outside it; clients
without the right password or CA are turned away. Runs on a private prefix whose ACLs come from
the catalogue exactly as `up` applies them for the real pipeline."""

from __future__ import annotations

import subprocess
import time
import traceback
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg2
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from infra.kafka import security
from infra.postgres import databases
from topics import acl
from topics.admin import delete, ensure
from topics.catalogue import ACCESS, ALL, COMMANDS, ORDERS_PLACED, ORDERS_STATUS, TX_LOG, Names
from workers.coordinator.worker import FOLDED, take_over
from workers.runtime.db import Database
from workers.runtime.settings import SERVICES

pytestmark = pytest.mark.integration

TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def names(settings):
    if settings.security == "plaintext":
        pytest.skip("the cluster runs --insecure: nothing to authenticate")
    names = Names(f"sec{uuid.uuid4().hex[:8]}.")
    made = [r.name for r in ensure(settings.kafka(), names=names)]
    acl.ensure(settings.kafka(), names)
    seed = Producer(settings.kafka(**{"acks": "all"}))
    for topic in ALL:  # one message on every topic, for the readers to find
        seed.produce(names.topic(topic), b"seed", key=b"k", partition=0)
    assert seed.flush(30) == 0
    yield names
    delete(settings.kafka(), made)
    acl.remove(settings.kafka(), names)


def produce(conf: dict, topic: str, transactional_id: str | None = None) -> str:
    """'ok' or the error's name."""
    p = Producer(
        {
            **conf,
            "message.timeout.ms": int(TIMEOUT_S * 1000),
            "acks": "all",
            **({"transactional.id": transactional_id} if transactional_id else {}),
        }
    )
    outcome = []
    try:
        if transactional_id:
            p.init_transactions(TIMEOUT_S)
            p.begin_transaction()
        p.produce(
            topic,
            b"probe",
            key=b"k",
            partition=0,
            on_delivery=lambda err, _msg: outcome.append(err.name() if err else "ok"),
        )
        if transactional_id:
            p.commit_transaction(TIMEOUT_S)
        p.flush(TIMEOUT_S)
    except KafkaException as e:
        return e.args[0].name()
    return outcome[0] if outcome else "no delivery report"


def consume(conf: dict, topic: str, group: str, subscribe: bool = True) -> str:
    """'ok' when a message arrives, else the error's name. Subscribed in `group`, or reading
    partition 0 by assignment (librdkafka still wants a group.id, but never joins it)."""
    c = Consumer(
        {
            **conf,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        if subscribe:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return msg.error().name()
            return "ok"
        return "timed out"
    finally:
        c.close()


def _forbidden(topics: tuple, worst=(TX_LOG, COMMANDS, ORDERS_STATUS, ORDERS_PLACED)):
    """The most harmful topic outside `topics`: a forged vote or decision first."""
    return next(t for t in worst + ALL if t not in topics)


@pytest.mark.parametrize("who", sorted(ACCESS))
def test_each_principal_does_its_job_and_nothing_else(settings, names, who):
    access = ACCESS[who]
    conf = settings.as_principal(who).kafka()
    group = names.group(access.group) if access.group else f"{names.prefix}{who}.probe"

    for topic in access.writes:
        assert produce(conf, names.topic(topic)) == "ok", f"{who} writes {topic.name}"
    for topic in access.reads:
        assert consume(conf, names.topic(topic), group) == "ok", f"{who} reads {topic.name}"
    if access.monitors:  # reads the pipeline's topics by assignment, joining no group
        assert all(
            consume(conf, names.topic(t), names.monitor_group(), subscribe=False) == "ok"
            for t in ALL
        )

    refused = produce(conf, names.topic(_forbidden(access.writes)))
    assert refused == "TOPIC_AUTHORIZATION_FAILED", f"{who} wrote {_forbidden(access.writes).name}"
    if access.group:  # in its own group, a topic it may not read
        refused = consume(conf, names.topic(_forbidden(access.reads)), group)
        assert refused == "TOPIC_AUTHORIZATION_FAILED", f"{who} read what it should not"
    else:  # no group to consume in at all
        assert consume(conf, names.topic(ALL[0]), group) == "GROUP_AUTHORIZATION_FAILED"
    outside = [t for t in ALL if t not in access.reads + access.writes]
    if outside and not access.monitors:  # nor may it so much as see a topic outside its job
        hidden = names.topic(outside[0])
        meta = Producer(conf).list_topics(hidden, timeout=TIMEOUT_S).topics[hidden]
        assert meta.error is not None and meta.error.name() == "TOPIC_AUTHORIZATION_FAILED"


def test_the_lag_monitor_sees_no_topic_or_group_outside_the_pipelines(
    settings, names, make_topic, unique
):
    conf = settings.as_principal("lag").kafka()
    elsewhere, group = make_topic("elsewhere"), f"{unique}.elsewhere-group"
    seed = Producer(settings.kafka(**{"acks": "all"}))
    seed.produce(elsewhere, b"not the pipeline's", partition=0)
    assert seed.flush(30) == 0
    committer = Consumer(settings.kafka(**{"group.id": group}))
    committer.commit(offsets=[TopicPartition(elsewhere, 0, 0)], asynchronous=False)
    committer.close()
    reader = Consumer({**conf, "group.id": names.monitor_group()})
    try:
        with pytest.raises(KafkaException) as refused:
            reader.get_watermark_offsets(TopicPartition(elsewhere, 0), timeout=TIMEOUT_S)
        # (librdkafka says the partition is unknown: the metadata it asked for hid the topic)
        assert refused.value.args[0].name() in ("TOPIC_AUTHORIZATION_FAILED", "_UNKNOWN_PARTITION")
    finally:
        reader.close()
    meta = Producer(conf).list_topics(elsewhere, timeout=TIMEOUT_S).topics[elsewhere]
    assert meta.error is not None and meta.error.name() == "TOPIC_AUTHORIZATION_FAILED"
    admin = AdminClient(conf)
    with pytest.raises(KafkaException) as refused:
        admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group].result()
    assert refused.value.args[0].name() == "GROUP_AUTHORIZATION_FAILED"
    listed = {
        g.group_id for g in admin.list_consumer_groups(request_timeout=TIMEOUT_S).result().valid
    }
    assert group not in listed
    owner = AdminClient(settings.kafka())  # kept alive until its future resolves
    owner.delete_consumer_groups([group], request_timeout=TIMEOUT_S)[group].result()


def test_a_service_cannot_use_another_services_group_nor_any_transactional_id(settings, names):
    # no worker writes in Kafka transactions: none may open one, under any id
    conf = settings.as_principal("intake").kafka()
    placed, out = names.topic(ALL[0]), names.topic(ACCESS["intake"].writes[0])
    assert consume(conf, placed, names.group("payment")) == "GROUP_AUTHORIZATION_FAILED"
    for txn in (f"{names.group('payment')}-0", f"{names.group('intake')}-0"):
        assert produce(conf, out, txn) == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", txn


def test_the_coordinator_takes_over_tx_log_as_itself(settings, names):
    # what a coordinator does on taking over a partition whose offset it committed itself:
    # re-fold tx.log from its saved position to that offset
    group, topic = names.group("coordinator"), names.topic(TX_LOG)
    c = Consumer(settings.kafka(**{"group.id": group, "enable.auto.commit": False}))
    c.commit(offsets=[TopicPartition(topic, 0, 1, metadata=FOLDED)], asynchronous=False)
    c.close()
    coordinator = replace(settings.as_principal("coordinator"), prefix=names.prefix)
    # a coordinator database of its own: the cluster's may hold saved positions of its tx.log
    name = names.prefix.replace(".", "_") + "coordinator"
    databases.ensure(settings.layout(), name, "coordinator")
    db = Database(databases.dsn(settings.layout(), name))
    try:
        taken, starts = take_over(coordinator, db, group, topic, [0])
    finally:
        db.close()
        databases.drop(settings.layout(), name)
    assert set(taken) == {0} and starts == {}


def _refusal(conf: dict) -> list[str]:
    """The errors a client meets trying to fetch metadata (which it must not get)."""
    errors = []
    client = Producer({**conf, "error_cb": lambda e: errors.append(e.name()), "log_level": 0})
    with pytest.raises(KafkaException):
        client.list_topics(timeout=8)
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        client.poll(0.5)  # serves error_cb
    return errors


def test_wrong_password_is_refused(settings):
    errors = _refusal({**settings.kafka(), "sasl.password": "not-the-password"})
    assert "_AUTHENTICATION" in errors


def test_unauthenticated_client_is_refused(settings):
    errors = _refusal({"bootstrap.servers": settings.bootstrap})
    assert errors and set(errors) <= {"_TRANSPORT", "_ALL_BROKERS_DOWN"}, errors


def test_client_that_does_not_trust_the_ca_is_refused(settings, tmp_path):
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(tmp_path / "other.key"),
            "-out",
            str(tmp_path / "other.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=some other CA",
        ],
        check=True,
        capture_output=True,
    )
    errors = _refusal({**settings.kafka(), "ssl.ca.location": str(tmp_path / "other.pem")})
    assert "_SSL" in errors


def test_a_failed_role_statement_leaves_no_password_in_the_server_log_or_traceback(
    settings, unique
):
    layout = settings.layout()
    # PostgreSQL reserves role names starting pg_: CREATE ROLE fails with the password in it,
    # and the server logs a failed statement whole
    name = f"pg_{unique}"
    log = layout.pg_dir / "postgres.log"
    before = log.stat().st_size
    try:
        with pytest.raises(psycopg2.Error) as failed:
            databases.ensure(layout, name, "orders")
        # (formatted before this frame holds the password among its own locals)
        shown = "".join(
            traceback.TracebackException.from_exception(failed.value, capture_locals=True).format()
        )
        written = log.read_bytes()[before:].decode(errors="replace")
        assert f'role name "{name}" is reserved' in written and "STATEMENT:" in written
        pw = databases.password(layout, name)
        assert pw not in written
        assert name in shown and pw not in shown
    finally:
        (layout.secrets_dir / f"pg-{name}.password").unlink(missing_ok=True)


def test_a_role_made_from_a_scram_verifier_logs_in_with_its_password(settings, unique):
    layout = settings.layout()
    try:
        databases.ensure(layout, unique, "orders")
        with psycopg2.connect(databases.dsn(layout, unique)) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == (unique,)
        conn.close()
    finally:
        databases.drop(layout, unique)
        (layout.secrets_dir / f"pg-{unique}.password").unlink(missing_ok=True)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_role_changes_rows_but_never_a_table(settings, service):
    conn = psycopg2.connect(settings.dsns[service])
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> "
                "'schema_migrations' ORDER BY 1"
            )
            tables = [t for (t,) in cur.fetchall()]
            assert tables, f"the {service} role sees no table"
            for table in tables:  # its rows: read, write, delete (rolled back)
                cur.execute(f"SELECT * FROM {table} LIMIT 1")
                cur.execute(f"DELETE FROM {table}")
        conn.rollback()
        for ddl in (
            "CREATE TABLE intruder (x int)",
            "CREATE TEMP TABLE intruder (x int)",
            f"DROP TABLE {tables[0]}",
            f"ALTER TABLE {tables[0]} ADD COLUMN intruder int",
            f"TRUNCATE {tables[0]}",
            "SELECT * FROM schema_migrations",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
                cur.execute(ddl)
            conn.rollback()
    finally:
        conn.close()


def test_no_ca_key_is_left_where_the_cluster_runs(settings):
    tls = settings.layout().tls_dir
    assert (tls / "node.p12").exists()
    # only the nodes' keystore holds a private key: with the CA's, anyone could mint CN=admin
    keys = [
        p.name for p in tls.iterdir() if p.name != "node.p12" and b"PRIVATE KEY" in p.read_bytes()
    ]
    assert keys == []


def test_the_controller_listener_accepts_only_the_controllers_certificate(settings):
    props = dict(line.split("=", 1) for line in security.node_properties(settings.layout(), 1))
    rules = props["ssl.principal.mapping.rules"]
    names = ["CN=broker", "CN=admin", "CN=intake", "CN=broker,O=elsewhere", "CN=broker2"]
    mapped = subprocess.run(
        [
            "java",
            "-cp",
            f"{settings.layout().kafka_lib}/*",
            str(Path(__file__).with_name("java") / "MapPrincipal.java"),
            rules,
            *names,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert dict(zip(names, mapped)) == {
        "CN=broker": "broker",
        "CN=admin": "refused",
        "CN=intake": "refused",
        "CN=broker,O=elsewhere": "refused",
        "CN=broker2": "refused",
    }
