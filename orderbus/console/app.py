"""The console's aiohttp application: its settings, the guard every request passes, the routes.

The guard, in order: a request to a loopback console must name it in `Host` (a rebound DNS name
does not); a state change from another site is refused (guard.py); then who is asking
(auth.py): a page without a session goes to the login form, a change without one gets 401; a
change must carry the session's CSRF token. The role and the read-only switch are checked by
each action itself (actions.py), so no route changes anything without asking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler

from orderbus.console import actions, panes
from orderbus.console.audit import AuditTrail
from orderbus.console.auth import (
    COOKIE,
    SESSION_S,
    Identity,
    Sessions,
    session_key,
    token_path,
    tokens,
)
from orderbus.console.guard import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE,
    cross_site,
    loopback_host,
    token_matches,
)
from orderbus.console.live import Live, Sources
from orderbus.console.render import HERE, Renderer
from orderbus.console.state import (
    AUDIT,
    CONFIG,
    IDENTITY,
    LIVE,
    OPEN_PATHS,
    PATHS,
    RENDER,
    SESSIONS,
    SETTINGS,
    TOKEN,
    TOKENS,
    ConsoleConfig,
    check,
    loopback,
    set_cookie,
)
from workers.runtime.settings import Settings


def make_app(settings: Settings, config: ConsoleConfig, live: bool = True) -> web.Application:
    """The application; `live=False` leaves the gathering loop out (the guard's tests need no
    cluster)."""
    check(config)
    layout = settings.layout()
    app = web.Application(middlewares=[guard])
    app[CONFIG], app[SETTINGS] = config, settings
    app[SESSIONS] = Sessions(session_key(layout), SESSION_S)
    app[TOKENS] = tokens(layout) if config.auth == TOKEN else {}
    app[PATHS] = {role: token_path(layout, role) for role in app[TOKENS]}
    app[AUDIT] = AuditTrail(audit_file(settings))
    app[RENDER] = Renderer()
    sources = Sources(settings, config.prometheus_url) if live else None
    app[LIVE] = Live(sources.gather if sources else dict, app[RENDER].live, config.interval_s)
    if sources is not None:
        app.cleanup_ctx.append(_running(app[LIVE], sources))
    app.on_shutdown.append(_end_streams)
    app.router.add_static("/static/", HERE / "static", append_version=False)
    panes.routes(app.router)
    actions.routes(app.router)
    return app


def _running(live: Live, sources: Sources) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(live.run())
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await asyncio.get_running_loop().run_in_executor(None, sources.close)

    return ctx


async def _end_streams(app: web.Application) -> None:
    app[LIVE].close()


SECURITY_HEADERS = {
    # no script but our own files, nothing framed, nothing sent to other sites
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _guarded(request, handler)
    if not response.prepared:  # a finished event stream has sent its headers long ago
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    if (
        loopback(config.host)
        and config.auth == TOKEN
        and not loopback_host(request.host, _port(request))
    ):
        return web.Response(
            status=421, text=f"this console answers to 127.0.0.1 only, not {request.host}"
        )
    why = cross_site(request.method, request.headers, request.host)
    if why:
        app[AUDIT].append("-", "-", f"{request.method} {request.path}", {}, why)
        return web.Response(status=403, text=why)
    if request.path.startswith(OPEN_PATHS):
        return await handler(request)
    identity, cookie = identify(request)
    if identity is None:
        if config.auth != TOKEN:
            return web.Response(
                status=401, text="sign in through the proxy (no trusted X-Forwarded-User)"
            )
        if request.method in SAFE:
            raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
        return web.Response(status=401, text="log in first")
    request[IDENTITY] = identity
    if request.method not in SAFE:
        given = request.headers.get(CSRF_HEADER) or (await request.post()).get(CSRF_FIELD)
        if not token_matches(identity.csrf, given if isinstance(given, str) else None):
            why = "the session's CSRF token is missing or wrong: reload the page"
            app[AUDIT].append(
                identity.user, identity.role, f"{request.method} {request.path}", {}, why
            )
            return web.Response(status=403, text=why)
    response = await handler(request)
    if cookie:
        set_cookie(response, cookie, request)
    return response


def _port(request: web.Request) -> int:
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    return sock[1] if sock else request.app[CONFIG].port


def identify(request: web.Request) -> tuple[Identity | None, str | None]:
    """The session's identity, and a new cookie when one must be set (a proxy user seen for
    the first time, or a different one than the cookie's)."""
    app = request.app
    sessions = app[SESSIONS]
    known = sessions.read(request.cookies.get(COOKIE))
    if app[CONFIG].auth == TOKEN:
        return known, None
    found = app[CONFIG].proxy.identify(request.remote, request.headers)
    if found is None:
        return None, None
    if known is not None and (known.user, known.role) == found:
        return known, None
    cookie, identity = sessions.issue(*found)
    return identity, cookie


def audit_file(settings: Settings) -> Path:
    """One trail per pipeline (a sandbox's console keeps its own)."""
    return settings.home / "console" / f"audit-{settings.prefix.rstrip('.') or 'main'}.jsonl"
