"""Cross-site request refusal, before anything else looks at a request that changes state.

Every change is a POST. A browser says where a request comes from in `Sec-Fetch-Site`: only
`same-origin` (our own pages) and `none` (typed by the user) pass; a browser too old to send it
sends `Origin`, which must then name this very host. This is the check Go 1.25 adopted as
`http.CrossOriginProtection`. Behind it, the session's own CSRF token must come back with every
change (htmx sends it as a header; a plain form as a field), as defence in depth."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"


def cross_site(method: str, headers: Mapping[str, str], host: str | None) -> str | None:
    """Why this request is refused as cross-site; None when it may go on."""
    if method in SAFE:
        return None
    site = headers.get("Sec-Fetch-Site")
    if site is not None:
        return (
            None
            if site in ("same-origin", "none")
            else f"cross-site request refused (Sec-Fetch-Site: {site})"
        )
    origin = headers.get("Origin")
    if origin is None:
        return None  # neither header: not a browser (curl, a script); the session token decides
    if origin == "null" or urlsplit(origin).netloc != (host or ""):
        return f"cross-site request refused (Origin: {origin})"
    return None


def token_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def loopback_host(host: str | None, port: int) -> bool:
    """Whether a Host header names this console on the loopback: a page of another site whose
    name an attacker points at 127.0.0.1 (DNS rebinding) carries its own name instead."""
    names = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    return (host or "") in names
