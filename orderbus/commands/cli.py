"""The `orderbus` command. Each subcommand module has `register(subparsers)`; it sets `func`
to a callable `(args, settings) -> exit code`."""

from __future__ import annotations

import argparse
import signal
import sys

from infra.procs import InfraError
from orderbus.commands import (
    Command,
    acl,
    chaos,
    cluster,
    console,
    demo,
    failover,
    keys,
    lag,
    orders,
    replay,
    run,
    top,
    tracker,
    verify,
)
from orderbus.ops.errors import UsageError
from workers.runtime.settings import Settings, SettingsError

# each sets up its own subcommands, in the order `orderbus --help` lists them
COMMANDS = (
    cluster,  # up, down, status
    acl,  # acl
    keys,  # keys [rotate SERVICE]
    orders,  # seed, publish, order, report
    run,  # run, worker
    demo,  # demo, bench
    verify,  # verify
    chaos,  # chaos
    failover,  # failover (measures partition idle time after a worker dies)
    lag,  # lag
    tracker,  # stuck (the tracker itself runs under `run tracker`)
    replay,  # replay dlq | reset | rebuild | audit
    top,  # top (one live pane for an incident)
    console,  # console (the operator's web console)
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orderbus", description="orderbus: order processing on Kafka and PostgreSQL"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `orderbus acl | head` ends quietly
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        command: Command = args.func  # each subcommand's register() sets it
        return command(args, settings)
    except (InfraError, SettingsError, UsageError) as e:
        print(f"orderbus {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
