"""verify."""

from __future__ import annotations

import argparse
import json
import sys

from orderbus.commands import Subparsers
from workers.runtime.settings import Settings


def register(sub: Subparsers) -> None:
    s = sub.add_parser("verify", help="check every invariant against the topics and databases")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait up to this long for the pipeline to go quiet first (default 60)",
    )
    s.set_defaults(func=_verify)


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from orderbus.ops.verify import render, verify

    result = verify(settings, args.wait, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 1 if result["violations"] else 0
