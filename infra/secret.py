"""Secrets `up` generates once and keeps with mode 0600 under the data directory, never in the
repository: PostgreSQL role passwords, Kafka SCRAM passwords, the TLS keystore password, the
keys the services sign their events on the signed topics with."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

from infra.layout import Layout


def secret(layout: Layout, name: str, suffix: str = ".password") -> str:
    layout.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private(layout.secrets_dir, 0o700)
    path = layout.secrets_dir / f"{name}{suffix}"
    if path.exists():
        private(path, 0o600)
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def private(path: Path, mode: int) -> None:
    """Take group and others' access away from a secret made (or copied, or restored from a
    backup) with looser permissions; mkdir and touch leave an existing one as it is."""
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(mode)
