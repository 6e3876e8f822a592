"""Settings: one frozen dataclass, built once from the environment at the entry point."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from infra import variables as var
from infra.kafka import security as kafka_security
from infra.layout import Layout
from infra.postgres.databases import SERVICES
from infra.variables import NAME_CHARS, SettingsError
from topics.catalogue import PARTITIONS, Names
from workers.runtime import crash

# the defaults their variables declare, for the code that needs them as values
INTAKE_MAX_BACKLOG: int = var.INTAKE_MAX_BACKLOG.default
TRACKER_GRACE_S: float = var.TRACKER_GRACE_S.default
TRACKER_RETAIN_S: float = var.TRACKER_RETAIN_S.default

__all__ = [
    "SERVICES",
    "Settings",
    "SettingsError",
    "INTAKE_MAX_BACKLOG",
    "TRACKER_GRACE_S",
    "TRACKER_RETAIN_S",
]


# a DSN's password, as libpq takes it: `password=...` (quoted or not; also a URI's query
# parameter) and a URI's `user:password@`
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)")
_URI_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(dsn: str) -> str:
    return _URI_PASSWORD.sub(r"\1***@", _KEYWORD_PASSWORD.sub(r"\1***", dsn))


@dataclass(frozen=True)
class Settings:
    home: Path
    bootstrap: str
    dsns: dict[str, str] = field(default_factory=dict)  # service -> libpq DSN
    pg_port: int = var.PG_PORT.default
    kafka_base_port: int = var.KAFKA_PORT.default
    brokers: int = 3  # of the local cluster (as `up` left it)
    # the local cluster's nodes and PostgreSQL on hosts of their own (`up --hosts`)
    hosts: bool = False
    deadline_ms: int = var.DEADLINE_MS.default
    intake_max_backlog: int = INTAKE_MAX_BACKLOG  # records behind downstream; 0: never hold
    prefix: str = var.TOPIC_PREFIX.default  # of every topic and group name (tests)
    partitions: int = PARTITIONS  # of every topic: set when they are made, the same for all
    metrics_port: int = var.METRICS_PORT.default  # first worker's; 0 turns metrics off
    security: str = "sasl_ssl"  # of the Kafka clients; or "plaintext"
    ca_file: str = ""  # PEM the brokers' certificates are checked against
    principal: str = "admin"  # whom this process's Kafka clients speak as
    tracker_grace_s: float = TRACKER_GRACE_S  # past its deadline, when an order is stuck
    tracker_retain_s: float = TRACKER_RETAIN_S  # how far past a finished order it is dropped
    host_id: str = "localhost"  # this host's part of its instances' ids
    log_level: str = var.LOG_LEVEL.default  # of the workers' and the tracker's logs
    # fault injection, worker:point:probability[,...] (workers/runtime/crash.py)
    crash: str = var.CRASH.default
    # credentials and key files (from_env)
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        # a repr lands in tracebacks, logs and test reports: the DSNs' passwords stay out of it
        shown = replace(self, dsns={k: redact(v) for k, v in self.dsns.items()})
        return (
            "Settings("
            + ", ".join(f"{f.name}={getattr(shown, f.name)!r}" for f in fields(self) if f.repr)
            + ")"
        )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Every variable read through its declaration (infra/variables.py); those whose default
        is the local cluster's take it from what `up` recorded in cluster.json."""
        env = dict(os.environ if env is None else env)
        home = Path(var.HOME.get(env)).resolve()
        state = _read_state(home)
        pg_port = var.PG_PORT.get(env, state.get("pg_port"))
        base = var.KAFKA_PORT.get(env, state.get("kafka_base_port"))
        brokers, hosts = state.get("brokers", 3), state.get("hosts", False)
        # a cluster `up` made before security existed is plaintext; a new one is secure
        security = var.KAFKA_SECURITY.get(
            env, state.get("security", "plaintext" if state else "sasl_ssl")
        )
        layout = Layout(
            home=home,
            brokers=brokers,
            kafka_base_port=base,
            pg_port=pg_port,
            secure=security == "sasl_ssl",
            hosts=hosts,
        )
        return cls(
            home=home,
            bootstrap=var.KAFKA_BOOTSTRAP.get(env, layout.bootstrap),
            dsns={s: env.get(var.DSN.of(s.upper())) or _local_dsn(layout, s) for s in SERVICES},
            pg_port=pg_port,
            kafka_base_port=base,
            brokers=brokers,
            hosts=hosts,
            deadline_ms=var.DEADLINE_MS.get(env),
            intake_max_backlog=var.INTAKE_MAX_BACKLOG.get(env),
            prefix=var.TOPIC_PREFIX.get(env),
            partitions=var.PARTITIONS.get(env, state.get("partitions", 6 if state else PARTITIONS)),
            metrics_port=var.METRICS_PORT.get(env),
            security=security,
            ca_file=var.KAFKA_CA.get(env, str(layout.ca_file)),
            tracker_grace_s=var.TRACKER_GRACE_S.get(env),
            tracker_retain_s=var.TRACKER_RETAIN_S.get(env),
            host_id=var.HOST_ID.get(
                env, re.sub(f"[^{NAME_CHARS}]", "-", socket.gethostname()) or "localhost"
            ),
            log_level=var.LOG_LEVEL.get(env),
            crash=_crash(var.CRASH.get(env)),
            # credentials and key files, read when a client or a signer needs them
            env={
                k: v
                for k, v in env.items()
                if k.startswith((var.KAFKA_PASSWORD.family, var.SIGNING_KEY_FILE.family))
            },
        )

    @property
    def names(self) -> Names:
        return Names(self.prefix, self.partitions)

    def layout(
        self, brokers: int | None = None, secure: bool | None = None, hosts: bool | None = None
    ) -> Layout:
        return Layout(
            home=self.home,
            brokers=brokers or self.brokers,
            kafka_base_port=self.kafka_base_port,
            pg_port=self.pg_port,
            secure=self.security == "sasl_ssl" if secure is None else secure,
            hosts=self.hosts if hosts is None else hosts,
        )

    def instance_id(self, slot: int) -> str:
        """The id of worker instance `slot` on this host (its client.id and, with static
        membership, group.instance.id follow from it): unique across the hosts of one pipeline,
        since two static members with one id fence each other for ever, and the same after a
        restart, so that a restarted instance is taken for the one it replaces."""
        return f"{self.host_id}-{slot}"

    def as_principal(self, principal: str) -> "Settings":
        """The same settings for a process that speaks to Kafka as `principal` (a worker, the
        producer, the lag monitor); operators' tools speak as admin."""
        return replace(self, principal=principal)

    def kafka(self, **extra: Any) -> dict[str, Any]:
        """librdkafka client settings every client shares: where, and who this process is."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap}
        if self.security == "sasl_ssl":
            conf.update(kafka_security.sasl_ssl(*self.credentials(self.principal), self.ca_file))
        return {**conf, **extra}

    def java_properties(self) -> str:
        """The same client settings for Kafka's own Java tools (`--command-config FILE`)."""
        if self.security == "plaintext":
            return "security.protocol=PLAINTEXT\n"
        user, password = self.credentials(self.principal)
        return "\n".join(
            [
                "security.protocol=SASL_SSL",
                f"sasl.mechanism={kafka_security.MECHANISM}",
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{user}" password="{password}";',
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={self.ca_file}",
                "",
            ]
        )

    def credentials(self, principal: str) -> tuple[str, str]:
        """(user, password) of a Kafka principal. The user is the principal's name, which the
        ACLs name too; the password comes from ORDERBUS_KAFKA_PASSWORD_<P> or
        ORDERBUS_KAFKA_PASSWORD_<P>_FILE, else from what `orderbus up` generated under
        $ORDERBUS_HOME/secrets."""
        key, user = principal.upper(), principal
        given, file = var.KAFKA_PASSWORD.of(key), var.KAFKA_PASSWORD_FILE.of(key)
        if self.env.get(given):
            return user, self.env[given]
        path = self.password_file(principal)
        try:
            return user, path.read_text().strip()
        except OSError as e:
            raise SettingsError(
                f"no Kafka password for principal {principal!r} ({path}: {e.strerror}); set "
                f"{given} or {file}, or run "
                "`orderbus up` for a local cluster"
            ) from None

    def password_file(self, principal: str) -> Path:
        named = self.env.get(var.KAFKA_PASSWORD_FILE.of(principal.upper()))
        return Path(named) if named else self.home / "secrets" / f"kafka-{principal}.password"

    def signing_key(self, service: str) -> bytes:
        """The key `service` signs with: the first of its keys."""
        return self.signing_keys(service)[0]

    def signing_key_file(self, service: str) -> Path:
        named = self.env.get(var.SIGNING_KEY_FILE.of(service.upper()))
        return Path(named) if named else self.home / "secrets" / f"signing-{service}.key"

    def signing_keys(self, service: str) -> list[bytes]:
        """Every key of `service` (workers/runtime/signing.py), one per line, newest first: it
        signs with the first, and each verifies what it signed. From the file
        ORDERBUS_SIGNING_KEY_<SERVICE>_FILE names, else from what `orderbus up` generated under
        $ORDERBUS_HOME/secrets. A service needs its own; its readers need every writer's."""
        path = self.signing_key_file(service)
        try:
            keys = [k.strip() for k in path.read_bytes().splitlines() if k.strip()]
        except OSError as e:
            raise SettingsError(
                f"no signing key for {service!r} ({path}: {e.strerror}); set "
                f"{var.SIGNING_KEY_FILE.of(service.upper())}, or run `orderbus up` for a local "
                "cluster"
            ) from None
        if not keys:
            raise SettingsError(f"{path} holds no signing key for {service!r}")
        if any(len(k) < 16 for k in keys):
            raise SettingsError(f"a signing key of {service!r} in {path} is too short to be one")
        return keys


def _read_state(home: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((home / "cluster.json").read_text())
        return state
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise SettingsError(
            f"{home / 'cluster.json'} is damaged ({e}); run `orderbus up` to rewrite it"
        ) from None


def _local_dsn(layout: Layout, service: str) -> str:
    secret = layout.secrets_dir / f"pg-{service}.password"
    password = secret.read_text().strip() if secret.exists() else ""
    return (
        f"host={layout.pg_host} port={layout.pg_port} dbname={service} user={service} "
        f"password={password} connect_timeout=5"
    )


def _crash(spec: str) -> str:
    try:
        crash.parse(spec)
    except ValueError as e:
        raise SettingsError(str(e)) from None
    return spec
