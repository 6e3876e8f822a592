"""Secrets `up` generates once and keeps with mode 0600 under the data directory, never in the
repository: PostgreSQL role passwords, Kafka SCRAM passwords, the TLS keystore password."""
from __future__ import annotations

import secrets

from infra.layout import Layout


def secret(layout: Layout, name: str) -> str:
    path = layout.secrets_dir / f"{name}.password"
    if path.exists():
        return path.read_text().strip()
    layout.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value
