"""The console's configuration, the checks it must pass before it listens, and the keys its
parts find each other under in the aiohttp application."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from aiohttp import web

from orderbus.console.audit import AuditTrail
from orderbus.console.auth import COOKIE, SESSION_S, Identity, Proxy, Sessions
from orderbus.console.live import Live
from orderbus.console.render import Renderer
from orderbus.ops.errors import UsageError
from workers.runtime.settings import Settings

TOKEN, PROXY = "token", "proxy"
OPEN_PATHS = ("/login", "/static/")  # reached without a session


@dataclass(frozen=True)
class ConsoleConfig:
    host: str = "127.0.0.1"
    port: int = 8600
    auth: str = TOKEN
    auth_explicit: bool = False  # given on the command line, not the default
    proxy: Proxy = field(default_factory=lambda: Proxy(()))
    read_only: bool = False
    prometheus_url: str | None = None
    interval_s: float = 3.0


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check(config: ConsoleConfig) -> None:
    """Refuses a configuration that would expose the console: another address than the
    loopback without authentication set, or a proxy mode that trusts no proxy."""
    if config.auth == PROXY and not config.proxy.trusted:
        raise UsageError(
            "--auth proxy needs --trusted-proxy ADDRESS (the proxy's address or network)"
        )
    if not loopback(config.host) and not config.auth_explicit:
        raise UsageError(
            f"refusing to listen on {config.host}: another address than the loopback needs "
            "authentication set explicitly (--auth proxy behind an authenticating proxy, or "
            "--auth token)"
        )


CONFIG = web.AppKey("config", ConsoleConfig)
SETTINGS = web.AppKey("settings", Settings)
SESSIONS = web.AppKey("sessions", Sessions)
TOKENS = web.AppKey("tokens", dict)
AUDIT = web.AppKey("audit", AuditTrail)
RENDER = web.AppKey("render", Renderer)
LIVE = web.AppKey("live", Live)
PATHS = web.AppKey("paths", dict)
IDENTITY = web.RequestKey("identity", Identity)  # who asks, set by the guard


def set_cookie(response: web.StreamResponse, cookie: str, request: web.Request) -> None:
    response.set_cookie(
        COOKIE,
        cookie,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=SESSION_S,
        path="/",
    )
