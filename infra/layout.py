"""Where the local cluster lives on disk and which loopback ports it takes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from infra import netns

KAFKA_VERSION = "4.1.2"
HOST = "127.0.0.1"
# on hosts of their own (`up --hosts`), the last byte of each one's address: node n's NODE_HOSTS + n
NODE_HOSTS, PG_HOST = 10, 20


@dataclass(frozen=True)
class Layout:
    home: Path  # ORDERBUS_HOME: data, logs, pid files, secrets
    brokers: int = 3  # combined broker+controller nodes
    # below Linux's ephemeral range (32768-60999): a client reconnecting in a loop to a stopped
    # node's port in that range can be handed that very port as its own source port (a TCP
    # self-connect) and keep the node from binding it again. Seen here when a chaos run
    # restarted a broker on 39092.
    kafka_base_port: int = 10092  # node n listens on base + (n-1)*10000, its controller on +1
    pg_port: int = 15432
    secure: bool = True  # SASL/SCRAM over TLS and ACLs; False only for `up --insecure`
    # each node and PostgreSQL on a host of its own: a network namespace with its own address
    # (infra/netns.py, `up --hosts`), rather than all on 127.0.0.1
    hosts: bool = False
    jar_cache: Path = Path.home() / ".cache" / "orderbus"

    def broker_port(self, node: int) -> int:
        return self.kafka_base_port + (node - 1) * 10000

    def controller_port(self, node: int) -> int:
        return self.broker_port(node) + 1

    @property
    def ports(self) -> list[int]:
        return [p for n in self.nodes for p in (self.broker_port(n), self.controller_port(n))] + [
            self.pg_port
        ]

    @property
    def nodes(self) -> range:
        return range(1, self.brokers + 1)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.node_host(n)}:{self.broker_port(n)}" for n in self.nodes)

    def node_host(self, node: int) -> str:
        return netns.address(NODE_HOSTS + node) if self.hosts else HOST

    def node_ns(self, node: int) -> str | None:
        """The network namespace node `node` runs in, if on hosts of their own."""
        return f"{netns.PREFIX}kafka{node}" if self.hosts else None

    @property
    def pg_host(self) -> str:
        return netns.address(PG_HOST) if self.hosts else HOST

    @property
    def pg_ns(self) -> str | None:
        return f"{netns.PREFIX}postgres" if self.hosts else None

    def ensure_hosts(self) -> None:
        """The namespaces of every node and of PostgreSQL (made once; `down` removes them)."""
        for node in self.nodes:
            netns.ensure(f"{netns.PREFIX}kafka{node}", NODE_HOSTS + node)
        netns.ensure(f"{netns.PREFIX}postgres", PG_HOST)

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    def node_dir(self, node: int) -> Path:
        return self.kafka_dir / f"node{node}"

    @property
    def kafka_lib(self) -> Path:
        return self.jar_cache / f"kafka-{KAFKA_VERSION}" / "lib"

    @property
    def tls_dir(self) -> Path:
        """The local CA and the nodes' keystore (made by `up`)."""
        return self.kafka_dir / "tls"

    @property
    def ca_file(self) -> Path:
        """What clients verify the nodes' certificate against."""
        return self.tls_dir / "ca.pem"

    @property
    def pg_dir(self) -> Path:
        """PostgreSQL refuses to run as root, so as root its files live where the `postgres`
        user can reach them (a checkout under /root or a 0700 temp dir is out of its reach)."""
        if os.geteuid() != 0:
            return self.home / "postgres"
        tag = hashlib.sha1(str(self.home.resolve()).encode()).hexdigest()[:10]
        return Path("/var/lib/orderbus") / f"pg-{tag}"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_dir / "run"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def state_file(self) -> Path:
        """What `up` started (broker count, ports), read by `down`, `status` and the defaults."""
        return self.home / "cluster.json"


def ephemeral_range() -> tuple[int, int] | None:
    try:
        low, high = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return None
