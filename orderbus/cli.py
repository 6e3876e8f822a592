"""The `orderbus` command. Each subcommand module has `register(subparsers)`; it sets `func`
to a callable `(args, settings) -> exit code`."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from infra.procs import InfraError
from workers.runtime.settings import Settings, SettingsError

MODULES = (
    "orderbus.cmd_cluster",     # up, down, status
    "orderbus.cmd_acl",         # acl
    "orderbus.cmd_orders",      # seed, publish, order, report
    "orderbus.cmd_run",         # run, worker
    "orderbus.cmd_demo",        # demo, bench
    "orderbus.cmd_verify",      # verify
    "orderbus.cmd_chaos",       # chaos
    "orderbus.cmd_failover",    # failover (measures partition idle time after a worker dies)
    "orderbus.cmd_lag",         # lag
    "orderbus.cmd_tracker",     # stuck (the tracker itself runs under `run tracker`)
    "orderbus.cmd_replay",      # replay dlq | reset | rebuild | audit
    "orderbus.cmd_top",         # top (one live pane for an incident)
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orderbus", description="orderbus: order processing on Kafka "
                                "and PostgreSQL")
    sub = p.add_subparsers(dest="command", required=True)
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
    return p


class UsageError(ValueError):
    """Bad input from the command line or a file: a clear message, exit 2."""


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)    # `orderbus acl | head` ends quietly
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except (InfraError, SettingsError, UsageError) as e:
        print(f"orderbus {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
