"""console: the operator's web console (orderbus/console/), argparse and the start-up lines."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from infra import variables
from orderbus.commands import Subparsers
from orderbus.ops.errors import UsageError
from workers.runtime.settings import Settings

DEFAULT_BIND = "127.0.0.1:8600"


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "console", help="the operator's web console (binds 127.0.0.1 unless --auth is set)"
    )
    s.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        metavar="HOST:PORT",
        help=f"default {DEFAULT_BIND}; port 0 picks one",
    )
    s.add_argument(
        "--auth",
        choices=("token", "proxy"),
        help="token: the generated tokens under $ORDERBUS_HOME/secrets (the default); proxy: trust "
        "X-Forwarded-User/-Groups from --trusted-proxy. Another address than the loopback needs it "
        "given",
    )
    s.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="proxy address or network",
    )
    s.add_argument(
        "--operators", default="", metavar="U,U", help="proxy users with the operator role"
    )
    s.add_argument("--read-only", action="store_true", help="refuse every action, whoever asks")
    s.add_argument(
        "--prometheus",
        default=variables.PROMETHEUS_URL.get(os.environ),
        metavar="URL",
        help="where to read firing alerts (default $ORDERBUS_PROMETHEUS_URL)",
    )
    s.add_argument(
        "--interval", type=float, default=3.0, metavar="S", help="seconds between live refreshes"
    )
    s.set_defaults(func=_console)


def _console(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from orderbus.console.auth import Proxy
        from orderbus.console.serve import serve
        from orderbus.console.state import ConsoleConfig
    except ImportError as e:  # jinja2 is an extra, as rich is for `top`
        raise UsageError(f"the console needs {e.name}: pip install 'orderbus[console]'") from None
    host, _, port = args.bind.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--bind {args.bind!r}: give HOST:PORT, e.g. {DEFAULT_BIND}")
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    config = ConsoleConfig(
        host=host.strip("[]"),
        port=int(port),
        auth=args.auth or "token",
        auth_explicit=args.auth is not None,
        proxy=Proxy(
            tuple(args.trusted_proxy), frozenset(u for u in args.operators.split(",") if u)
        ),
        read_only=args.read_only,
        prometheus_url=args.prometheus,
        interval_s=args.interval,
    )
    try:
        asyncio.run(serve(settings, config, announce=lambda line: print(line, flush=True)))
    except OSError as e:
        print(f"orderbus console: cannot listen on {args.bind}: {e.strerror}", file=sys.stderr)
        return 2
    return 0
