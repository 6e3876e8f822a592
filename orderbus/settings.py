"""Settings: one frozen dataclass, built once from the environment at the entry point."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from infra.layout import Layout
from topics.catalogue import Names

SERVICES = ("orders", "inventory", "payments", "shipping")


class SettingsError(ValueError):
    pass


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None


@dataclass(frozen=True)
class Settings:
    home: Path
    bootstrap: str
    dsns: dict = field(default_factory=dict)     # service -> libpq DSN
    pg_port: int = 15432
    kafka_base_port: int = 10092
    brokers: int = 3                              # of the local cluster (as `up` left it)
    deadline_ms: int = 10_000
    prefix: str = ""                              # of every topic and group name (tests)
    metrics_port: int = 9400                      # first worker's; 0 turns metrics off

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home = Path(env.get("ORDERBUS_HOME") or ".orderbus").resolve()
        state = _read_state(home)
        pg_port = _int(env, "ORDERBUS_PG_PORT", state.get("pg_port", Layout.pg_port))
        base = _int(env, "ORDERBUS_KAFKA_PORT",
                    state.get("kafka_base_port", Layout.kafka_base_port))
        brokers = state.get("brokers", 3)
        layout = Layout(home=home, brokers=brokers, kafka_base_port=base, pg_port=pg_port)
        dsns = {}
        for service in SERVICES:
            dsns[service] = env.get(f"ORDERBUS_DSN_{service.upper()}") or _local_dsn(layout, service)
        deadline_ms = _int(env, "ORDERBUS_DEADLINE_MS", 10_000)
        if deadline_ms <= 0:
            raise SettingsError(f"ORDERBUS_DEADLINE_MS={deadline_ms} must be positive")
        prefix = env.get("ORDERBUS_TOPIC_PREFIX", "")
        if prefix and not re.fullmatch(r"[A-Za-z0-9._-]+", prefix):
            raise SettingsError(f"ORDERBUS_TOPIC_PREFIX={prefix!r} may hold only letters, digits, "
                                "'.', '_' and '-'")
        return cls(home=home, bootstrap=env.get("ORDERBUS_KAFKA_BOOTSTRAP") or layout.bootstrap,
                   dsns=dsns, pg_port=pg_port, kafka_base_port=base, brokers=brokers,
                   deadline_ms=deadline_ms, prefix=prefix,
                   metrics_port=_int(env, "ORDERBUS_METRICS_PORT", 9400))

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    def layout(self, brokers: int | None = None) -> Layout:
        return Layout(home=self.home, brokers=brokers or self.brokers,
                      kafka_base_port=self.kafka_base_port, pg_port=self.pg_port)

    def kafka(self, **extra) -> dict:
        """librdkafka client settings every client shares."""
        return {"bootstrap.servers": self.bootstrap, **extra}


def _read_state(home: Path) -> dict:
    try:
        return json.loads((home / "cluster.json").read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise SettingsError(f"{home / 'cluster.json'} is damaged ({e}); run `orderbus up` "
                            "to rewrite it") from None


def _local_dsn(layout: Layout, service: str) -> str:
    secret = layout.secrets_dir / f"pg-{service}.password"
    password = secret.read_text().strip() if secret.exists() else ""
    return (f"host=127.0.0.1 port={layout.pg_port} dbname={service} user={service} "
            f"password={password} connect_timeout=5")
