"""`up`, `down`, `down --purge` and their error messages, on a private single-node cluster
(own home and ports) so the shared cluster of the test run is never touched."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys

import psycopg2
import pytest

from infra.kafka import jars
from infra.layout import Layout
from infra.procs import InfraError

pytestmark = pytest.mark.integration


@pytest.fixture
def private(tmp_path):
    env = {
        **os.environ,
        "ORDERBUS_HOME": str(tmp_path / "home"),
        "ORDERBUS_KAFKA_PORT": "19192",
        "ORDERBUS_PG_PORT": "15532",
    }

    def run(*args, check=True):
        proc = subprocess.run(
            [sys.executable, "-m", "orderbus", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"orderbus {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    yield run, env
    run("down", "--purge", check=False)


def _dsn(home, port):
    pw = (home / "secrets" / "pg-orders.password").read_text().strip()
    return f"host=127.0.0.1 port={port} dbname=orders user=orders password={pw}"


def test_up_twice_down_up_keeps_data_purge_starts_clean(private, tmp_path):
    run, env = private
    home = tmp_path / "home"
    first = run("up", "--brokers", "1")
    assert "up in" in first.stdout
    assert "nothing changed" in run("up", "--brokers", "1").stdout
    with psycopg2.connect(_dsn(home, 15532)) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO order_status VALUES ('kept', 'PENDING', NULL, 1)")
    cluster_id = (home / "kafka" / "cluster.id").read_text()
    run("down")
    run("up", "--brokers", "1")
    assert (home / "kafka" / "cluster.id").read_text() == cluster_id
    with psycopg2.connect(_dsn(home, 15532)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM order_status WHERE order_id = 'kept'")
        assert cur.fetchone()[0] == 1
    run("down", "--purge")
    assert not home.exists()
    run("up", "--brokers", "1")
    with psycopg2.connect(_dsn(home, 15532)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM order_status")
        assert cur.fetchone()[0] == 0
    assert (home / "kafka" / "cluster.id").read_text() != cluster_id


def test_insecure_mode_is_loud_and_switching_modes_needs_a_purge(private, tmp_path):
    run, env = private
    first = run("up", "--brokers", "1", "--insecure")
    assert "WARNING --insecure" in first.stdout and "PLAINTEXT" in first.stdout
    assert not (tmp_path / "home" / "kafka" / "tls").exists()
    assert run("status").returncode == 0
    refused = run("up", "--brokers", "1", check=False)
    assert refused.returncode == 2 and "made --insecure" in refused.stderr
    run("down", "--purge")
    secure = run("up", "--brokers", "1")
    assert "SASL/SCRAM over TLS" in secure.stdout
    secrets = tmp_path / "home" / "secrets"
    assert all(p.stat().st_mode & 0o077 == 0 for p in secrets.iterdir())
    assert run("acl").returncode == 0  # the cluster holds exactly the catalogue's ACLs
    admin = secrets / "kafka-admin.password"
    kept = admin.read_bytes()
    admin.unlink()
    refused = run("up", "--brokers", "1", check=False)
    assert refused.returncode == 2 and "password of admin is missing" in refused.stderr
    assert not admin.exists()  # not quietly replaced by a new one
    admin.write_bytes(kept)
    assert "nothing changed" in run("up", "--brokers", "1").stdout


def test_port_taken_is_a_clear_message(private):
    run, _ = private
    with socket.socket() as s:
        # a connection of an earlier run in TIME_WAIT must not keep the test from taking it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 15532))
        s.listen()
        proc = run("up", "--brokers", "1", check=False)
    assert proc.returncode == 2
    assert "port 15532" in proc.stderr and "taken" in proc.stderr


def test_damaged_kafka_data_is_refused_and_kept(private, tmp_path):
    run, _ = private
    meta = tmp_path / "home" / "kafka" / "node1" / "data" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("version=1\n")
    proc = run("up", "--brokers", "1", check=False)
    assert proc.returncode == 2
    assert "damaged" in proc.stderr and "nothing was deleted" in proc.stderr
    assert meta.read_text() == "version=1\n"


def test_second_up_from_another_shell_is_told(private, tmp_path):
    run, _ = private
    lock = tmp_path / "home" / ".lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        proc = run("up", "--brokers", "1", check=False)
    assert proc.returncode == 2
    assert "another `orderbus up` is running" in proc.stderr


def test_missing_maven_is_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn on it
    layout = Layout(home=tmp_path, jar_cache=tmp_path / "cache")
    with pytest.raises(InfraError, match="`java` is not on PATH"):
        jars.ensure_jars(layout)
