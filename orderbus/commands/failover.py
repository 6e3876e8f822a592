"""failover."""

from __future__ import annotations

import argparse
import json
import sys

from orderbus.commands import Subparsers
from orderbus.ops.errors import UsageError
from workers.runtime.settings import Settings


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "failover",
        help="measure how long a killed worker's partitions stay "
        "idle, or (--broker) what a killed broker costs publishing and decisions",
    )
    s.add_argument(
        "--worker", choices=("intake", "coordinator", "inventory", "payment"), default="coordinator"
    )
    s.add_argument("--protocol", choices=("classic", "consumer"), default="classic")
    s.add_argument(
        "--membership",
        choices=("static", "dynamic"),
        default="dynamic",
        help="classic protocol membership (default dynamic, as `orderbus run`)",
    )
    s.add_argument(
        "--no-restart",
        action="store_true",
        help="leave the killed instance down: the survivor must take over",
    )
    s.add_argument(
        "--compare",
        action="store_true",
        help="classic, classic + static membership and consumer protocol in one run",
    )
    s.add_argument(
        "--broker",
        action="store_true",
        help="SIGKILL a broker instead (the active controller and another in turn, "
        "each restarted --down seconds later): the longest publish acknowledgement wait and "
        "decision gap per kill",
    )
    s.add_argument(
        "--down",
        type=float,
        default=15.0,
        help="--broker: seconds the killed broker stays down (default 15)",
    )
    s.add_argument("--kills", type=int, default=3)
    s.add_argument("--rate", type=float, default=100.0)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_failover)


def _failover(args: argparse.Namespace, settings: Settings) -> int:
    from orderbus.lab.failover import CONFIGS, measure, render

    if args.kills < 1 or args.rate <= 0 or args.down < 0:
        raise UsageError("--kills must be at least 1, --rate positive and --down not negative")
    static = args.membership == "static" and args.protocol == "classic"
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    if args.broker:
        from orderbus.lab import broker_failover

        result = broker_failover.measure(settings, args.kills, args.rate, args.down, log=log)
        print(json.dumps(result, indent=2) if args.json else broker_failover.render(result))
        return 1 if result["violations"] or result["undelivered"] else 0
    configs = CONFIGS if args.compare else [(args.protocol, static)]
    rows = []
    for protocol, static in configs:
        log(
            f"{args.worker}: {protocol}{' + static' if static else ''}, "
            f"{'restarted' if not args.no_restart else 'left down'}"
        )
        rows.append(
            measure(
                settings,
                args.worker,
                protocol,
                static,
                not args.no_restart,
                args.kills,
                args.rate,
                log=log,
            )
        )
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    return 1 if any(r["violations"] for r in rows) else 0
