"""The services' signing keys (workers/runtime/signing.py): which a service has, and a rotation.

A key file holds one key per line, newest first: the service signs with the first, and every
line verifies what it signed. A rotation puts a new key first and keeps the old ones, because
tx.log is kept for ever and every reader (the coordinator's re-fold, verify, audit) must still
take what they signed. A reader meeting a key id it does not know reads its key files again, so
on one host the new key is taken at once; across hosts, the file reaches the readers' hosts
before the signer's (README, Security)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from orderbus.ops.errors import UsageError
from workers.runtime.settings import Settings
from workers.runtime.signing import AUTHORS, key_id


@dataclass(frozen=True)
class KeyFile:
    service: str
    path: Path
    ids: list[str]  # newest (the one it signs with) first


def list_keys(settings: Settings) -> list[KeyFile]:
    return [
        KeyFile(s, settings.signing_key_file(s), [key_id(k) for k in settings.signing_keys(s)])
        for s in AUTHORS
    ]


def rotate(settings: Settings, service: str) -> KeyFile:
    """A new key first in `service`'s file, the old ones kept after it. The file is replaced
    whole (written beside it, then renamed), so no reader ever sees half of it."""
    if service not in AUTHORS:
        raise UsageError(f"{service!r} signs nothing; one of {', '.join(AUTHORS)}")
    old = settings.signing_keys(service)
    new = secrets.token_urlsafe(24).encode()
    path = settings.signing_key_file(service)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(b"\n".join([new, *old]) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return KeyFile(service, path, [key_id(k) for k in (new, *old)])
