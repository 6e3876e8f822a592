"""Who is asking, and what they may do.

Two ways in. **Token** (the default, for one machine): `orderbus console` keeps two random tokens
under `$ORDERBUS_HOME/secrets` (mode 0600, like every other secret `up` makes), one for the
operator role and one for the viewer role; a token typed into the login form buys a session.
**Proxy** (for a team): a reverse proxy that has authenticated the user (oauth2-proxy and its
kind) passes `X-Forwarded-User`, and `X-Forwarded-Groups`; those headers are believed only from
the proxy's own addresses, so a client that reaches the console around the proxy gets nothing.

A session is a cookie signed with a key kept beside the tokens: the user, the role, this
session's CSRF token and when it began. HttpOnly and SameSite=Strict, so neither a script nor
another site's request carries it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.layout import Layout
from infra.secret import secret

VIEWER, OPERATOR = "viewer", "operator"
ROLES = (VIEWER, OPERATOR)
COOKIE = "orderbus_console"
SESSION_S = 12 * 3600  # a working day; then log in again
USER_HEADER = "X-Forwarded-User"
GROUPS_HEADER = "X-Forwarded-Groups"
OPERATORS_GROUP = "orderbus-operators"  # proxy users in this group are operators


@dataclass(frozen=True)
class Identity:
    user: str
    role: str
    csrf: str  # this session's token: every change must send it back

    @property
    def operator(self) -> bool:
        return self.role == OPERATOR


def token_path(layout: Layout, role: str) -> Path:
    return layout.secrets_dir / f"console-{role}.token"


def tokens(layout: Layout) -> dict[str, str]:
    """role -> its token, made on first use."""
    return {role: secret(layout, f"console-{role}", suffix=".token") for role in ROLES}


def session_key(layout: Layout) -> bytes:
    return secret(layout, "console-session", suffix=".key").encode()


def role_of_token(known: dict[str, str], given: str) -> str | None:
    """The role a typed token grants, compared in constant time."""
    found = None
    for role, token in known.items():
        if hmac.compare_digest(token.encode(), given.strip().encode()):
            found = role
    return found


class Sessions:
    """Signs and reads the session cookie."""

    def __init__(self, key: bytes, max_age_s: float = SESSION_S):
        self.key, self.max_age_s = key, max_age_s

    def issue(self, user: str, role: str) -> tuple[str, Identity]:
        identity = Identity(user, role, secrets.token_urlsafe(18))
        body = json.dumps([user, role, identity.csrf, int(time.time())]).encode()
        payload = base64.urlsafe_b64encode(body).decode()
        return f"{payload}.{self._sign(payload)}", identity

    def read(self, cookie: str | None) -> Identity | None:
        if not cookie or "." not in cookie:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._sign(payload)):
            return None
        try:
            user, role, csrf, issued = json.loads(base64.urlsafe_b64decode(payload))
        except (ValueError, TypeError):
            return None
        if role not in ROLES or time.time() - issued > self.max_age_s:
            return None
        return Identity(user, role, csrf)

    def _sign(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Proxy:
    """Trusted reverse-proxy headers: `trusted` are the proxy's addresses or networks;
    `operators` user names that are operators whatever their groups."""

    trusted: tuple[str, ...]
    operators: frozenset[str] = frozenset()

    def trusts(self, peer: str | None) -> bool:
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in self.trusted)

    def identify(self, peer: str | None, headers: Mapping[str, str]) -> tuple[str, str] | None:
        """(user, role) from a trusted peer's headers; None otherwise."""
        user = (headers.get(USER_HEADER) or "").strip()
        if not user or not self.trusts(peer):
            return None
        groups = {g.strip() for g in (headers.get(GROUPS_HEADER) or "").split(",")}
        return user, OPERATOR if user in self.operators or OPERATORS_GROUP in groups else VIEWER
