"""The `orderbus` command."""
from __future__ import annotations

import argparse
import json
import sys

from infra.procs import InfraError
from orderbus.settings import Settings, SettingsError


def _up(args, settings):
    from orderbus import local
    out = local.up(settings, args.brokers, log=_log(args))
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


def _down(args, settings):
    from orderbus import local
    local.down(settings, purge=args.purge)
    return 0


def _status(args, settings):
    from orderbus import local
    st = local.status(settings)
    print(json.dumps(st, indent=2) if args.json else local.render_status(st))
    healthy = st["postgres"]["up"] and all(b["up"] for b in st["kafka"]["brokers"])
    return 0 if healthy else 3


def _log(args):
    return (lambda msg: print(msg, file=sys.stderr)) if getattr(args, "json", False) else print


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orderbus", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("up", help="start the local Kafka cluster and PostgreSQL (idempotent)")
    s.add_argument("--brokers", type=int, choices=(1, 3), default=3)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_up)
    s = sub.add_parser("down", help="stop what `up` started")
    s.add_argument("--purge", action="store_true", help="also delete all data")
    s.set_defaults(func=_down)
    s = sub.add_parser("status", help="brokers, PostgreSQL and topics")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except (InfraError, SettingsError) as e:
        print(f"orderbus {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
