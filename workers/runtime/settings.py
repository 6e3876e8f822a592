"""Settings: one frozen dataclass, built once from the environment at the entry point."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from infra.kafka import security as kafka_security
from infra.layout import Layout
from infra.postgres.databases import SERVICES
from topics.catalogue import PARTITIONS, Names
from workers.runtime import crash

# records a worker downstream of intake may be behind before intake holds new orders
# (workers/intake/hold.py): about 2 s of the coordinator's work at 400 orders/s, 6 s of a
# participant's
INTAKE_MAX_BACKLOG = 5_000

SECURITY = ("sasl_ssl", "plaintext")
# what Kafka accepts in topic, group and group.instance.id names
NAME_CHARS = "A-Za-z0-9._-"
NAME = re.compile(f"[{NAME_CHARS}]+")
# the order tracker's defaults. Past its deadline, how long before an order counts as stuck:
TRACKER_GRACE_S = 5.0
# a finished order (or a fragment: seen without its placement or transaction start, so never
# judged stuck) leaves the tracker's table once it has read this far past its last event on all
# three topics, so the view's memory follows the rate, not the history; unfinished orders stay
TRACKER_RETAIN_S = 120.0


class SettingsError(ValueError):
    pass


# a DSN's password, as libpq takes it: `password=...` (quoted or not; also a URI's query
# parameter) and a URI's `user:password@`
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)")
_URI_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(dsn: str) -> str:
    return _URI_PASSWORD.sub(r"\1***@", _KEYWORD_PASSWORD.sub(r"\1***", dsn))


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None


def _seconds(env: dict, name: str, default: float, zero_ok: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value >= 0 if zero_ok else value > 0):  # NaN fails both
        raise SettingsError(
            f"{name}={raw!r} must be a {'non-negative' if zero_ok else 'positive'} number of seconds"
        )
    return value


@dataclass(frozen=True)
class Settings:
    home: Path
    bootstrap: str
    dsns: dict = field(default_factory=dict)  # service -> libpq DSN
    pg_port: int = 15432
    kafka_base_port: int = 10092
    brokers: int = 3  # of the local cluster (as `up` left it)
    deadline_ms: int = 10_000
    intake_max_backlog: int = INTAKE_MAX_BACKLOG  # records behind downstream; 0: never hold
    prefix: str = ""  # of every topic and group name (tests)
    partitions: int = PARTITIONS  # of every topic: set when they are made, the same for all
    metrics_port: int = 9400  # first worker's; 0 turns metrics off
    security: str = "sasl_ssl"  # of the Kafka clients; or "plaintext"
    ca_file: str = ""  # PEM the brokers' certificates are checked against
    principal: str = "admin"  # whom this process's Kafka clients speak as
    tracker_grace_s: float = TRACKER_GRACE_S  # past its deadline, when an order is stuck
    tracker_retain_s: float = TRACKER_RETAIN_S  # how far past a finished order it is dropped
    host_id: str = "localhost"  # this host's part of its instances' ids
    log_level: str = "INFO"  # of the workers' and the tracker's logs
    crash: str = ""  # fault injection, worker:point:probability[,...] (workers/runtime/crash.py)
    env: dict = field(default_factory=dict, repr=False)  # credentials and key files

    def __repr__(self) -> str:
        # a repr lands in tracebacks, logs and test reports: the DSNs' passwords stay out of it
        shown = replace(self, dsns={k: redact(v) for k, v in self.dsns.items()})
        return (
            "Settings(" + ", ".join(f"{f.name}={getattr(shown, f.name)!r}" for f in fields(self) if f.repr) + ")"
        )

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home = Path(env.get("ORDERBUS_HOME") or ".orderbus").resolve()
        state = _read_state(home)
        pg_port = _int(env, "ORDERBUS_PG_PORT", state.get("pg_port", Layout.pg_port))
        base = _int(env, "ORDERBUS_KAFKA_PORT", state.get("kafka_base_port", Layout.kafka_base_port))
        brokers = state.get("brokers", 3)
        # a cluster `up` made before security existed is plaintext; a new one is secure
        security = env.get("ORDERBUS_KAFKA_SECURITY") or state.get(
            "security", "plaintext" if state else "sasl_ssl"
        )
        if security not in SECURITY:
            raise SettingsError(f"ORDERBUS_KAFKA_SECURITY={security!r}: one of {', '.join(SECURITY)}")
        layout = Layout(
            home=home, brokers=brokers, kafka_base_port=base, pg_port=pg_port, secure=security == "sasl_ssl"
        )
        dsns = {}
        for service in SERVICES:
            dsns[service] = env.get(f"ORDERBUS_DSN_{service.upper()}") or _local_dsn(layout, service)
        deadline_ms = _int(env, "ORDERBUS_DEADLINE_MS", 10_000)
        if deadline_ms <= 0:
            raise SettingsError(f"ORDERBUS_DEADLINE_MS={deadline_ms} must be positive")
        max_backlog = _int(env, "ORDERBUS_INTAKE_MAX_BACKLOG", INTAKE_MAX_BACKLOG)
        if max_backlog < 0:
            raise SettingsError(f"ORDERBUS_INTAKE_MAX_BACKLOG={max_backlog} must be 0 or more")
        partitions = _int(env, "ORDERBUS_PARTITIONS", state.get("partitions", 6 if state else PARTITIONS))
        if partitions <= 0:
            raise SettingsError(f"ORDERBUS_PARTITIONS={partitions} must be positive")
        prefix = env.get("ORDERBUS_TOPIC_PREFIX", "")
        if prefix and not NAME.fullmatch(prefix):
            raise SettingsError(
                f"ORDERBUS_TOPIC_PREFIX={prefix!r} may hold only letters, digits, '.', '_' and '-'"
            )
        return cls(
            home=home,
            bootstrap=env.get("ORDERBUS_KAFKA_BOOTSTRAP") or layout.bootstrap,
            dsns=dsns,
            pg_port=pg_port,
            kafka_base_port=base,
            brokers=brokers,
            deadline_ms=deadline_ms,
            intake_max_backlog=max_backlog,
            prefix=prefix,
            partitions=partitions,
            metrics_port=_int(env, "ORDERBUS_METRICS_PORT", 9400),
            security=security,
            ca_file=env.get("ORDERBUS_KAFKA_CA") or str(layout.ca_file),
            tracker_grace_s=_seconds(env, "ORDERBUS_TRACKER_GRACE_S", TRACKER_GRACE_S, zero_ok=True),
            tracker_retain_s=_seconds(env, "ORDERBUS_TRACKER_RETAIN_S", TRACKER_RETAIN_S),
            host_id=_host_id(env),
            log_level=_log_level(env),
            crash=_crash(env),
            env={k: v for k, v in env.items() if k.startswith(("ORDERBUS_KAFKA_", "ORDERBUS_SIGNING_KEY_"))},
        )

    @property
    def names(self) -> Names:
        return Names(self.prefix, self.partitions)

    def layout(self, brokers: int | None = None, secure: bool | None = None) -> Layout:
        return Layout(
            home=self.home,
            brokers=brokers or self.brokers,
            kafka_base_port=self.kafka_base_port,
            pg_port=self.pg_port,
            secure=self.security == "sasl_ssl" if secure is None else secure,
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

    def kafka(self, **extra) -> dict:
        """librdkafka client settings every client shares: where, and who this process is."""
        conf = {"bootstrap.servers": self.bootstrap}
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
        if self.env.get(f"ORDERBUS_KAFKA_PASSWORD_{key}"):
            return user, self.env[f"ORDERBUS_KAFKA_PASSWORD_{key}"]
        named = self.env.get(f"ORDERBUS_KAFKA_PASSWORD_{key}_FILE")
        path = Path(named) if named else self.home / "secrets" / f"kafka-{principal}.password"
        try:
            return user, path.read_text().strip()
        except OSError as e:
            raise SettingsError(
                f"no Kafka password for principal {principal!r} ({path}: {e.strerror}); set "
                f"ORDERBUS_KAFKA_PASSWORD_{key} or ORDERBUS_KAFKA_PASSWORD_{key}_FILE, or run "
                "`orderbus up` for a local cluster"
            ) from None

    def signing_key(self, service: str) -> bytes:
        """The key `service` signs with: the first of its keys."""
        return self.signing_keys(service)[0]

    def signing_key_file(self, service: str) -> Path:
        named = self.env.get(f"ORDERBUS_SIGNING_KEY_{service.upper()}_FILE")
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
                f"ORDERBUS_SIGNING_KEY_{service.upper()}_FILE, or run `orderbus up` for a local "
                "cluster"
            ) from None
        if not keys:
            raise SettingsError(f"{path} holds no signing key for {service!r}")
        if any(len(k) < 16 for k in keys):
            raise SettingsError(f"a signing key of {service!r} in {path} is too short to be one")
        return keys


def _host_id(env: dict) -> str:
    raw = env.get("ORDERBUS_HOST_ID")
    if raw:
        if not NAME.fullmatch(raw):
            raise SettingsError(f"ORDERBUS_HOST_ID={raw!r} may hold only letters, digits, '.', '_' and '-'")
        return raw
    return re.sub(f"[^{NAME_CHARS}]", "-", socket.gethostname()) or "localhost"


def _read_state(home: Path) -> dict:
    try:
        return json.loads((home / "cluster.json").read_text())
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
        f"host=127.0.0.1 port={layout.pg_port} dbname={service} user={service} "
        f"password={password} connect_timeout=5"
    )


def _log_level(env: dict) -> str:
    level = env.get("ORDERBUS_LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"ORDERBUS_LOG_LEVEL={level!r}: one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def _crash(env: dict) -> str:
    spec = env.get("ORDERBUS_CRASH", "")
    try:
        crash.parse(spec)
    except ValueError as e:
        raise SettingsError(str(e)) from None
    return spec
