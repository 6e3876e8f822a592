"""lag: consumer lag per group and partition: a table, JSON, a watch or a Prometheus exporter."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict

from prometheus_client import CollectorRegistry, start_http_server

from orderbus.commands import Subparsers
from orderbus.ops.errors import UsageError
from topics.lag import WINDOW, LagError, LagReader, Report
from topics.lag_metrics import LagCollector
from workers.runtime.settings import Settings

SINGLE_SAMPLES, SINGLE_SPACING_S = 3, 1.0  # a single run looks 3 times over ~2 s, for a trend
WATCH_DEFAULT_S = 5.0
DEFAULT_HOST = "127.0.0.1"  # an exporter is reachable from this machine only

HELP = f"""For every consumer group of the pipeline (or --group), topic and partition: the
committed offset, the log-end offset (high watermark), the lag in messages (end - committed, exactly
as kafka-consumer-groups counts it), the lag in seconds (age of the oldest unconsumed message) and a
status by Burrow's rules over a window of samples: OK; WARN lag growing; STALL offsets frozen
while members are present; STOP no members and offsets frozen; ERR offsets went backwards or
cannot be read. A group takes its worst partition's status. A single run samples
{SINGLE_SAMPLES} times over ~{(SINGLE_SAMPLES - 1) * SINGLE_SPACING_S:.0f} s (so it takes about
3 s);
--watch and --serve keep a window of the last {WINDOW} samples in memory. A lag of 1 left by a
Kafka transaction's commit marker (a foreign transactional producer's; orderbus opens none) has
lag 0 s and counts as caught up."""


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "lag", help="consumer lag per group and partition (Burrow's status rules)", description=HELP
    )
    s.add_argument(
        "--group", help="only this consumer group (default: every group of the pipeline)"
    )
    s.add_argument("--topic", help="only this topic")
    s.add_argument("--json", action="store_true", help="JSON; with --watch one object per line")
    s.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=WATCH_DEFAULT_S,
        metavar="SECONDS",
        help=f"sample every SECONDS (default {WATCH_DEFAULT_S:.0f}) until Ctrl-C",
    )
    s.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        help=f"serve Prometheus metrics (HOST defaults to {DEFAULT_HOST}), sampling every --watch "
        "seconds",
    )
    s.set_defaults(func=_lag)


def _lag(args: argparse.Namespace, settings: Settings) -> int:
    if args.watch is not None and args.watch <= 0:
        raise UsageError(f"--watch {args.watch:g}: the interval must be positive")
    address = _address(args.serve) if args.serve else None
    reader = LagReader(settings.as_principal("lag").kafka(), settings.names)
    try:
        if args.topic:
            reader.check_topic(args.topic)
        groups = reader.groups(args.group, prefix=settings.prefix)
        if address:
            return _serve(reader, args, settings.prefix, address)
        if args.watch is not None:
            return _watch(reader, args, settings.prefix)
        for i in range(SINGLE_SAMPLES):
            if i:
                time.sleep(SINGLE_SPACING_S)
            reader.sample(groups, args.topic)
        _print(reader.report(), args.json)
        return 0
    except LagError as e:
        raise UsageError(f"{e} (Kafka at {settings.bootstrap})") from None
    finally:
        reader.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise UsageError(f"--serve {text!r}: give [HOST:]PORT with a port from 1 to 65535")
    return host or DEFAULT_HOST, number


def _refresh(reader: LagReader, args: argparse.Namespace, prefix: str) -> Report:
    # a watch over every group picks up groups that appear while it runs
    reader.sample(reader.groups(args.group, prefix=prefix), args.topic)
    return reader.report()


def _watch(reader: LagReader, args: argparse.Namespace, prefix: str) -> int:
    try:
        while True:
            report = _refresh(reader, args, prefix)
            if not args.json:
                print(time.strftime("%H:%M:%S"))
            _print(report, args.json)
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def _serve(
    reader: LagReader, args: argparse.Namespace, prefix: str, address: tuple[str, int]
) -> int:
    collector = LagCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    host, port = address
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    print(f"serving lag metrics on http://{host}:{port}/metrics", file=sys.stderr)
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))  # finish the round, close
    interval = args.watch or WATCH_DEFAULT_S
    try:
        while not stopping:
            try:
                collector.report = _refresh(reader, args, prefix)
            except LagError as e:  # the group went away, a broker hiccup: say so, go on
                print(f"orderbus lag: {e}", file=sys.stderr)
            deadline = time.monotonic() + interval
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    return 0


def _print(report: Report, as_json: bool) -> None:
    for group, error in report.errors.items():
        print(f"orderbus lag: {group}: {error}", file=sys.stderr)
    if as_json:
        print(
            json.dumps(
                {
                    "partitions": [asdict(p) for p in report.partitions],
                    "groups": [asdict(g) for g in report.groups],
                }
            )
        )
        return
    rows = [("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG-S", "STATUS")]
    for p in report.partitions:
        rows.append(
            (
                p.group,
                p.topic,
                str(p.partition),
                _n(p.committed),
                _n(p.end),
                _n(p.lag),
                "-" if p.lag_seconds is None else f"{p.lag_seconds:.1f}",
                p.status,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i < 2 or i == 7 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths))
            ).rstrip()
        )
    print()
    for g in report.groups:
        members = "?" if g.members is None else g.members
        print(f"{g.group}: {g.status}, lag {g.lag}, {members} members")


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
