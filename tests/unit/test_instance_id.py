"""A worker instance's Kafka identity: unique across hosts, the same after a restart."""

from __future__ import annotations

import socket

import pytest

from workers.main import loop_config
from workers.runtime.clients import consumer_config, producer_config
from workers.runtime.settings import Settings, SettingsError


def ids(tmp_path, slot: int, **env) -> tuple[str, str, str]:
    s = Settings.from_env(
        {"ORDERBUS_HOME": str(tmp_path), "ORDERBUS_KAFKA_SECURITY": "plaintext", **env}
    )
    cfg = loop_config("coordinator", slot, s, static=True)
    consumer = consumer_config(s, cfg)
    return (
        producer_config(s, cfg)["client.id"],
        consumer["client.id"],
        consumer["group.instance.id"],
    )


def test_two_hosts_slot_0_are_two_instances(tmp_path):
    a = ids(tmp_path, 0, ORDERBUS_HOST_ID="host-a")
    b = ids(tmp_path, 0, ORDERBUS_HOST_ID="host-b")
    assert a == ("orderbus.coordinator-host-a-0",) * 3
    assert not set(a) & set(b)


def test_a_restarted_slot_keeps_its_id_and_other_slots_differ(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "db1.example.com")
    first = ids(tmp_path, 1)
    assert first == ids(tmp_path, 1) == ("orderbus.coordinator-db1.example.com-1",) * 3
    assert ids(tmp_path, 0)[0] == "orderbus.coordinator-db1.example.com-0"


def test_a_host_name_kafka_refuses_is_made_legal(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "büro pc")
    assert ids(tmp_path, 0)[0] == "orderbus.coordinator-b-ro-pc-0"


@pytest.mark.parametrize("raw", ["two words", "a/b", "ü"])
def test_a_bad_host_id_is_refused_by_name(tmp_path, raw):
    with pytest.raises(SettingsError, match="ORDERBUS_HOST_ID="):
        ids(tmp_path, 0, ORDERBUS_HOST_ID=raw)
