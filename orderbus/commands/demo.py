"""demo, bench."""

from __future__ import annotations

import argparse
import json
import sys

from orderbus.commands import Subparsers
from orderbus.commands.console import DEFAULT_BIND
from orderbus.ops.errors import UsageError
from workers.runtime.settings import Settings


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "demo", help="start everything, run a mixed batch of orders, print the report"
    )
    s.set_defaults(func=_demo)
    s = sub.add_parser("bench", help="end-to-end throughput and latency in a sandbox pipeline")
    s.add_argument("--orders", type=int, default=5000)
    s.add_argument(
        "--rate",
        type=float,
        default=None,
        help="offered orders/s (default: as fast as the producer can)",
    )
    s.add_argument("--hot", action="store_true", help="flash sale: every order for one SKU")
    s.add_argument("--instances", type=int, default=1, help="instances of each worker")
    s.add_argument("--verify", action="store_true", help="then time `verify` over the run's orders")
    s.add_argument(
        "--tracker",
        action="store_true",
        help="run the order tracker too and report its consumer lag",
    )
    s.add_argument(
        "--tracker-cold",
        action="store_true",
        help="then stop the pipeline, start a "
        "tracker on the run's events and time how long it takes to fold them",
    )
    s.add_argument(
        "--hops",
        action="store_true",
        help="also read tx.log and split each order's "
        "latency into its steps (intake, participants, coordinator, final status)",
    )
    s.add_argument(
        "--open",
        action="store_true",
        help="keep payment stopped until every order "
        "has begun, report each worker's RSS with them all open, then let it go (back-pressure "
        "off, deadline 10 minutes; latency figures then mean little)",
    )
    s.add_argument(
        "--ceiling",
        action="store_true",
        help="then run Kafka's ProducerPerformance "
        "on the cluster and report the pipeline's records/s as a share of it",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_bench)
    s = sub.add_parser(
        "bench-takeover",
        help="how long a new coordinator takes to own a tx.log partition, by history and open "
        "orders",
    )
    s.add_argument(
        "--history",
        default="10000,100000,1000000",
        help="finished orders behind the partition, comma-separated",
    )
    s.add_argument("--open", default="0,1000", help="open orders on it, comma-separated")
    s.add_argument("--repeat", type=int, default=3)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_bench_takeover)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from orderbus.ops.demo import demo

    code = demo(settings)

    secrets = settings.layout().secrets_dir
    print(f"\nthe operator's console: `orderbus console`, then http://{DEFAULT_BIND}/")
    print(f"  operator token in {secrets / 'console-operator.token'}")
    print(f"  viewer token in {secrets / 'console-viewer.token'}")
    return code


def _counts(text: str, flag: str) -> list[int]:

    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: comma-separated whole numbers, e.g. 0,1000") from None
    if any(v < 0 for v in values):
        raise UsageError(f"{flag} {text!r}: counts cannot be negative")
    return values


def _bench_takeover(args: argparse.Namespace, settings: Settings) -> int:
    from orderbus.lab.takeover_bench import render, run

    histories, opens = _counts(args.history, "--history"), _counts(args.open, "--open")
    if args.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    rows = run(settings, histories, opens, args.repeat, log)
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from orderbus.lab.bench import Plan, bench, render, to_json

    if args.orders < 1 or args.instances < 1 or (args.rate is not None and args.rate <= 0):
        raise UsageError("--orders and --instances must be at least 1, --rate positive")
    if args.tracker and args.tracker_cold:
        raise UsageError(
            "--tracker and --tracker-cold both use the sandbox's tracker group: choose one"
        )
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    plan = Plan(
        args.orders,
        args.rate,
        args.hot,
        args.instances,
        verify=args.verify,
        tracker=args.tracker,
        tracker_cold=args.tracker_cold,
        hops=args.hops,
        open_=args.open,
        ceiling=args.ceiling,
    )
    result = bench(settings, plan, log)
    print(to_json(result) if args.json else render(result))
    return 0
