"""up, down, status."""

from __future__ import annotations

import argparse
import json
import sys

from orderbus.commands import Subparsers
from orderbus.ops import cluster
from workers.runtime.settings import Settings


def register(sub: Subparsers) -> None:
    s = sub.add_parser("up", help="start the local Kafka cluster and PostgreSQL (idempotent)")
    s.add_argument("--brokers", type=int, choices=(1, 3), default=3)
    s.add_argument(
        "--insecure",
        action="store_true",
        help="Kafka without TLS, authentication or "
        "ACLs (quick experiments only; the data must be purged to switch modes)",
    )
    s.add_argument(
        "--hosts",
        action="store_true",
        help="each node and PostgreSQL on a host of its own: a network namespace with its own "
        "address on a bridge (root; for network faults, see Chaos)",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_up)
    s = sub.add_parser("down", help="stop what `up` started")
    s.add_argument("--purge", action="store_true", help="also delete all data")
    s.set_defaults(func=_down)
    s = sub.add_parser("status", help="brokers, PostgreSQL and topics")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    out = cluster.up(settings, args.brokers, insecure=args.insecure, hosts=args.hosts, log=log)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    cluster.down(settings, purge=args.purge)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    st = cluster.status(settings)
    print(json.dumps(st, indent=2) if args.json else cluster.render_status(st))
    healthy = st["postgres"]["up"] and all(b["up"] for b in st["kafka"]["brokers"])
    return 0 if healthy else 3
