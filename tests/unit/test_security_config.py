"""The security configuration as data: ACLs derived from the catalogue, node properties, client
settings and where credentials come from."""

from __future__ import annotations

import pytest

from infra.kafka import security
from infra.layout import Layout
from topics import acl
from topics.catalogue import ACCESS, ALL, GROUPS, ORDERS_DLQ, ORDERS_PLACED, Names
from workers.runtime.settings import Settings, SettingsError


def test_only_the_producer_writes_orders_placed_and_it_writes_nothing_else():
    writers = {
        g.principal
        for g in acl.grants(Names())
        if g.operation == "write" and g.resource == "topic" and g.name == ORDERS_PLACED.name
    }
    assert writers == {"producer"}
    assert [g for g in acl.grants(Names()) if g.principal == "producer"] == [
        acl.Grant("producer", "topic", "literal", ORDERS_PLACED.name, "write")
    ]


def test_every_catalogue_topic_has_a_writer_and_a_reader():
    grants = acl.grants(Names())
    for topic in ALL:
        ops = {g.operation for g in grants if g.resource == "topic" and g.name == topic.name}
        assert "write" in ops, topic.name
        if topic != ORDERS_DLQ:  # dead letters are read by operators (admin)
            assert "read" in ops, topic.name


def test_no_transactional_ids_and_groups_are_each_workers_own():
    assert not [g for g in acl.grants(Names("p.")) if g.resource == "transactional_id"]
    for g in acl.grants(Names("p.")):
        if g.resource == "group" and not ACCESS[g.principal].monitors and g.operation == "read":
            assert (g.pattern, g.name) == ("literal", f"p.{GROUPS[g.principal]}")


def test_intake_may_only_describe_the_groups_it_holds_back_for():
    described = {
        (g.principal, g.pattern, g.name)
        for g in acl.grants(Names("p."))
        if g.resource == "group" and g.operation == "describe" and not ACCESS[g.principal].monitors
    }
    assert described == {
        ("intake", "literal", f"p.{GROUPS[w]}") for w in ("inventory", "payment", "coordinator")
    }


def test_prefixed_pipeline_grants_name_only_its_own_resources():
    for g in acl.grants(Names("sandbox.")):
        assert g.name.startswith("sandbox."), g


def test_the_lag_monitor_reads_the_pipelines_topics_and_describes_its_groups_only():
    names = Names("p.")
    mine = [g for g in acl.grants(names) if ACCESS[g.principal].monitors]
    assert {(g.resource, g.pattern, g.name, g.operation) for g in mine} == {
        *(("topic", "literal", names.topic(t), "read") for t in ALL),
        ("topic", "prefixed", "p.orderbus.", "read"),  # the tracker's changelogs
        ("group", "prefixed", "p.orderbus.", "describe"),
    }
    assert all(names.group(w).startswith("p.orderbus.") for w in GROUPS)
    assert names.monitor_group().startswith("p.orderbus.")


def test_diff_finds_missing_extra_and_foreign_only_on_this_pipelines_resources():
    want = acl.grants(Names())
    stale = acl.Grant("shipping", "topic", "literal", "tx.log.v1", "write")
    elsewhere = acl.Grant("shipping", "topic", "literal", "other.tx.log.v1", "write")
    stranger = acl.Grant("someone", "topic", "literal", "tx.log.v1", "write")
    everyone = acl.Grant("User:*", "topic", "prefixed", "tx.", "read")
    denial = acl.Grant("intake", "group", "literal", "orderbus.intake", "read", "deny")
    broad = acl.Grant("lag", "topic", "literal", acl.ANY, "read")  # what the monitor once had
    drift = acl.diff(Names(), want[1:] + [stale, elsewhere, stranger, everyone, denial, broad])
    assert drift.missing == [want[0]]
    assert drift.extra == sorted([stale, broad])
    assert drift.foreign == sorted([stranger, everyone, denial])


def test_a_grant_covers_by_name_wildcard_or_prefix():
    assert acl.Grant("x", "topic", "literal", "*", "read").covers("topic", "tx.log.v1")
    assert acl.Grant("x", "topic", "prefixed", "tx.", "read").covers("topic", "tx.log.v1")
    assert not acl.Grant("x", "topic", "prefixed", "tx.", "read").covers("group", "tx.log.v1")
    assert not acl.Grant("x", "topic", "literal", "tx.log", "read").covers("topic", "tx.log.v1")


def _layout(tmp_path, secure=True) -> Layout:
    return Layout(home=tmp_path, secure=secure)


def test_secure_nodes_authenticate_clients_nodes_and_controllers(tmp_path):
    props = "\n".join(security.node_properties(_layout(tmp_path), 1))
    assert "listener.security.protocol.map=BROKER:SASL_SSL,CONTROLLER:SSL" in props
    assert "listener.name.controller.ssl.client.auth=required" in props
    assert "allow.everyone.if.no.acl.found=false" in props
    assert f"authorizer.class.name={security.AUTHORIZER}" in props
    assert "PLAINTEXT" not in props
    assert "--add-scram" in security.format_args(_layout(tmp_path))


def test_insecure_nodes_are_plaintext(tmp_path):
    props = "\n".join(security.node_properties(_layout(tmp_path, secure=False), 1))
    assert "SASL" not in props and "authorizer" not in props
    assert security.format_args(_layout(tmp_path, secure=False)) == []


def _settings(tmp_path, **env) -> Settings:
    return Settings.from_env({"ORDERBUS_HOME": str(tmp_path), **env})


def test_client_credentials_from_the_local_secrets(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "kafka-intake.password").write_text("s3cret\n")
    conf = _settings(tmp_path).as_principal("intake").kafka()
    assert (conf["security.protocol"], conf["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (conf["sasl.username"], conf["sasl.password"]) == ("intake", "s3cret")
    assert conf["ssl.ca.location"].endswith("kafka/tls/ca.pem")


def test_client_credentials_from_the_environment_and_files(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    s = _settings(
        tmp_path,
        ORDERBUS_KAFKA_PASSWORD_INTAKE_FILE=str(pw),
        ORDERBUS_KAFKA_PASSWORD_PRODUCER="inline",
        ORDERBUS_KAFKA_CA="/etc/ca.pem",
    )
    assert s.credentials("intake") == ("intake", "from-file")
    assert s.credentials("producer") == ("producer", "inline")
    assert s.as_principal("producer").kafka()["ssl.ca.location"] == "/etc/ca.pem"


def test_a_missing_password_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="ORDERBUS_KAFKA_PASSWORD_SHIPPING"):
        _settings(tmp_path).as_principal("shipping").kafka()


def test_plaintext_clients_carry_no_credentials(tmp_path):
    conf = _settings(tmp_path, ORDERBUS_KAFKA_SECURITY="plaintext").kafka()
    assert conf == {"bootstrap.servers": conf["bootstrap.servers"]}
    with pytest.raises(SettingsError, match="one of sasl_ssl, plaintext"):
        _settings(tmp_path, ORDERBUS_KAFKA_SECURITY="ssl")


def test_java_tools_get_the_same_identity(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "kafka-admin.password").write_text("adm\n")
    props = _settings(tmp_path).java_properties()
    assert 'username="admin" password="adm";' in props
    assert "ssl.truststore.type=PEM" in props
