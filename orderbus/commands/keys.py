"""orderbus keys [rotate SERVICE]: the services' signing keys by id, and a rotation."""

from __future__ import annotations

import argparse
import json

from orderbus.commands import Subparsers
from orderbus.ops import keys
from workers.runtime.settings import Settings


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "keys", help="the services' signing keys by id; `keys rotate SERVICE` adds a new one"
    )
    p.add_argument("--json", action="store_true")
    ks = p.add_subparsers(dest="keys_command")
    r = ks.add_parser(
        "rotate", help="sign with a new key from the service's next start; older keys still verify"
    )
    r.add_argument("service")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.keys_command == "rotate":
        done = keys.rotate(settings, args.service)
        print(
            f"{done.service}: new key {done.ids[0]} first in {done.path}; {len(done.ids) - 1} "
            "older kept"
        )
        print(f"restart every {done.service} instance: it signs with the new key from then on")
        return 0
    files = keys.list_keys(settings)
    if args.json:
        print(
            json.dumps([{"service": f.service, "file": str(f.path), "ids": f.ids} for f in files])
        )
        return 0
    for f in files:
        print(f"{f.service:12} signs with {f.ids[0]}; verifies {len(f.ids)} key(s)  {f.path}")
    return 0
