"""A private PostgreSQL instance of the machine's own PostgreSQL: own data directory, own port."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import psycopg2

from infra import netns, procs
from infra.layout import HOST, Layout
from infra.procs import InfraError

ADMIN = "postgres"  # the superuser inside our instance; reachable only over its 0700 socket dir

HBA = """\
# written by orderbus up: the admin over the private socket, each service role into the
# database of the same name only, nothing else
local   all       postgres                 trust
host    sameuser  all       127.0.0.1/32   scram-sha-256
"""
# on hosts of their own (up --hosts), the services come from the other namespaces' addresses
HOSTS_HBA = f"host    sameuser  all       {netns.SUBNET}.0/24  scram-sha-256\n"


def binaries() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def install(log: Callable[[str], object] = print) -> Path:
    """Install Debian's PostgreSQL if it is missing, without the cluster Debian would start."""
    found = binaries()
    if found:
        return found
    procs.require_apt("PostgreSQL", "postgresql")
    log("installing PostgreSQL from Debian's packages")
    conf = Path("/etc/postgresql-common/createcluster.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    if not conf.exists():
        conf.write_text("create_main_cluster = false\n")
    procs.apt_install("postgresql")
    found = binaries()
    if not found:
        raise InfraError(
            "apt-get installed postgresql but no server binary was found under /usr/lib/postgresql"
        )
    return found


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise InfraError(
            "running as root needs the `postgres` system user (Debian's postgresql package creates "
            "it)"
        ) from None
    return "postgres"


def _own(path: Path, user: str | None) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if user:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def data_dir(layout: Layout) -> Path:
    return layout.pg_dir / "data"


def pidfile(layout: Layout) -> Path:
    return layout.pg_dir / "postgres.pid"


def prepare(layout: Layout, log: Callable[[str], object] = print) -> None:
    """initdb once; rewrite our settings every time (they are ours, not the operator's)."""
    bindir = install(log)
    user = _run_as()
    _own(layout.pg_dir, user)
    _own(layout.pg_socket_dir, user)
    data = data_dir(layout)
    if data.exists() and any(data.iterdir()) and not (data / "PG_VERSION").exists():
        raise InfraError(
            f"{data} is not empty but holds no PostgreSQL cluster: refusing to touch it. "
            "Move it aside or run `orderbus down --purge`"
        )
    if not (data / "PG_VERSION").exists():
        _own(data, user)
        proc = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                ADMIN,
                "-E",
                "UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            capture_output=True,
            text=True,
            user=user,
        )
        if proc.returncode != 0:
            raise InfraError(f"initdb failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    conf = "\n".join(
        [
            f"port = {layout.pg_port}",
            f"listen_addresses = '{layout.pg_host}'",
            f"unix_socket_directories = '{layout.pg_socket_dir}'",
            "max_connections = 300",
            "shared_buffers = 256MB",
            "password_encryption = 'scram-sha-256'",
            # durability is never traded for speed: fsync and synchronous_commit stay on
            "fsync = on",
            "synchronous_commit = on",
            "max_prepared_transactions = 0",
            "log_min_messages = warning",
            "",
        ]
    )
    for name, text in (
        ("orderbus.conf", conf),
        ("pg_hba.conf", HBA + (HOSTS_HBA if layout.hosts else "")),
    ):
        path = data / name
        path.write_text(text)
        if user:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)
    main_conf = data / "postgresql.conf"
    if "include_if_exists = 'orderbus.conf'" not in main_conf.read_text():
        with open(main_conf, "a") as f:
            f.write("\ninclude_if_exists = 'orderbus.conf'\n")


def running(layout: Layout) -> int | None:
    return procs.running(pidfile(layout))


def start(layout: Layout) -> bool:
    if running(layout):
        return False
    if not layout.hosts and not procs.port_free(layout.pg_port):
        raise InfraError(
            f"port {layout.pg_port} on {HOST} is taken by another program: stop it, or "
            "choose another port with ORDERBUS_PG_PORT"
        )
    stale = data_dir(layout) / "postmaster.pid"
    if stale.exists():
        # left by a crash (SIGKILL); the pid in it is not ours any more, so postgres would refuse
        pid = procs.read_pid(stale) if stale.read_text().split("\n", 1)[0].isdigit() else None
        if pid and procs.alive(pid):
            raise InfraError(
                f"a PostgreSQL (pid {pid}) is already running on {data_dir(layout)} "
                "but was not started by orderbus; stop it first"
            )
    bindir = install()
    argv, user = [str(bindir / "postgres"), "-D", str(data_dir(layout))], _run_as()
    if layout.pg_ns:  # setpriv takes the user inside the namespace: entering one needs root
        argv, user = netns.inside(layout.pg_ns, argv, user), None
    procs.start(argv, pidfile(layout), layout.pg_dir / "postgres.log", user=user)
    return True


def wait_ready(layout: Layout, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not running(layout):
            raise InfraError(
                "PostgreSQL exited during start-up; its log says:\n"
                + procs.tail(layout.pg_dir / "postgres.log")
            )
        try:
            admin_connect(layout, "postgres").close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise InfraError(
                    f"PostgreSQL did not accept connections within {timeout_s:.0f}s; "
                    f"see {layout.pg_dir / 'postgres.log'}"
                ) from None
            time.sleep(0.2)


def stop(layout: Layout, grace_s: float = 30.0) -> bool:
    # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to disconnect
    return procs.stop(pidfile(layout), grace_s=grace_s, sig=signal.SIGINT)


def admin_connect(layout: Layout, dbname: str) -> Any:
    conn = psycopg2.connect(
        host=str(layout.pg_socket_dir),
        port=layout.pg_port,
        user=ADMIN,
        dbname=dbname,
        connect_timeout=3,
    )
    conn.autocommit = True
    return conn


def restart(layout: Layout, attempts: int = 5) -> None:
    for attempt in range(attempts):
        try:
            start(layout)
            wait_ready(layout, timeout_s=60)
            return
        except InfraError:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)  # the old postmaster may still hold its port for a moment
