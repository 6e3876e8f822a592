"""Running the console until Ctrl-C or SIGTERM, and saying where it is."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from aiohttp import web

from orderbus.console.app import make_app
from orderbus.console.state import PATHS, TOKEN, ConsoleConfig
from workers.runtime.settings import Settings


async def serve(
    settings: Settings, config: ConsoleConfig, announce: Callable[[str], None] = print
) -> None:
    app = make_app(settings, config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = runner.addresses[0][1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    announce(f"orderbus console: http://{host}:{port}/")
    if config.auth == TOKEN:
        paths = app[PATHS]
        announce(f"  operator token: {paths['operator']}")
        announce(f"  viewer token:   {paths['viewer']}")
    else:
        announce(
            f"  users from X-Forwarded-User, trusted from {', '.join(config.proxy.trusted)} only"
        )
    if config.read_only:
        announce("  read-only: every action is refused")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
