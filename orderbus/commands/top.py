"""top: the pipeline in one refreshing pane for an incident (orderbus/ops/top.py gathers and
draws)."""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys
import termios
import time
import tty
from typing import Any, TextIO

from orderbus.commands import Subparsers
from orderbus.ops.errors import UsageError
from orderbus.ops.top_gather import Gatherer
from workers.runtime.settings import Settings

INTERVAL_S = 2.0
PIPE_WIDTH = 120  # a file or a pipe has no width; rich would take 80 and fold the tables

HELP = """Per consumer group: lag and status (Burrow's rules, worst first); orders per second by
outcome (from two successive counts of the orders database); in-doubt transactions; dead-letter
depth by reason; p99 latency per stage from the tracker's histogram on the metrics ports
(settings' first port and the 20 after it), over the last refresh and since the tracker started;
the most overdue stuck orders from the tracker's snapshot. What cannot be had says n/a and why.
q or Ctrl-C quits. --once takes two looks --interval apart (rates need two counts) and prints
the second."""


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "top",
        help="live view of lag, order rates, in-doubt, dead letters, stage latency and stuck "
        "orders",
        description=HELP,
    )
    s.add_argument(
        "--interval",
        type=float,
        default=INTERVAL_S,
        metavar="SECONDS",
        help=f"between refreshes (default {INTERVAL_S:g})",
    )
    s.add_argument(
        "--once",
        action="store_true",
        help="print one frame to stdout and exit (plain text when not a terminal)",
    )
    s.set_defaults(func=_top)


def _top(args: argparse.Namespace, settings: Settings) -> int:
    if args.interval <= 0:
        raise UsageError(f"--interval {args.interval:g}: the interval must be positive")
    try:
        from rich.console import Console
        from rich.live import Live

        from orderbus.ops.top import render
    except ImportError:
        raise UsageError("top draws with rich: pip install 'orderbus[top]' (or rich)") from None
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    console = Console(width=width)
    # librdkafka writes its errors (a broker down, in a chaos run) straight to stderr, which
    # would tear the live pane: route them to a logger that drops them; the frame says n/a
    quiet = logging.getLogger("orderbus.ops.top.kafka")
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())
    config = settings.kafka() if args.once else settings.kafka(logger=quiet)
    gatherer = Gatherer(settings, config)
    try:
        if args.once:
            gatherer.gather()
            time.sleep(args.interval)
            console.print(render(gatherer.gather()))
            return 0
        if not console.is_terminal:  # piped: one frame after another, no cursor tricks
            while True:
                console.print(render(gatherer.gather()))
                time.sleep(args.interval)
        with Keys() as keys, Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                live.update(render(gatherer.gather()), refresh=True)
                if keys.quit_within(args.interval):
                    return 0
    except KeyboardInterrupt:
        return 0
    finally:
        gatherer.close()


class Keys:
    """Single keys from stdin without Enter and without blocking (cbreak: Ctrl-C still signals),
    when stdin is a terminal; otherwise only Ctrl-C quits."""

    def __init__(self, stream: TextIO = sys.stdin) -> None:
        self.stream = stream
        self.fd = stream.fileno() if stream.isatty() else None
        self.saved: list[Any] | None = None  # termios' attributes, as tcgetattr gives them

    def __enter__(self) -> "Keys":
        if self.fd is not None:
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None and self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def quit_within(self, seconds: float) -> bool:
        """Waits up to `seconds`; True as soon as q is pressed."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.fd is None:
                time.sleep(left)
                return False
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 64)
                if not data:  # stdin closed: nothing more to read, just wait
                    self.fd = None
                elif b"q" in data.lower():
                    return True
        return False
