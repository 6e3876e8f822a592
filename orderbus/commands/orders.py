"""seed, publish, order, report: put orders in, and see what became of them. Four commands'
argparse and printing, with publish's progress and pacing; the work is in orderbus/ops and
topics/producer.py."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import psycopg2
from confluent_kafka import KafkaException

from infra.procs import InfraError
from orderbus.commands import Command, Subparsers
from orderbus.ops import report as reports
from orderbus.ops.errors import UsageError
from orderbus.ops.generate import generate
from orderbus.ops.groups import active_groups
from orderbus.ops.seed import (
    DEFAULT_PRICE_CENTS,
    SEED_FILE,
    load_catalog,
    reset_catalog,
    seed_price,
    seeded_ids,
)
from orderbus.ops.timeline import order_timeline
from schemas.errors import DeadLetter
from topics.catalogue import ORDERS_PLACED
from topics.producer import OrderPublisher, key_of
from workers.runtime.settings import Settings


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "seed",
        help="reset stock, balances and orders on a pipeline with no history yet (refused after)",
    )
    s.add_argument("--skus", type=int, help="number of skus (sku-0001...)")
    s.add_argument("--stock", type=int, help="initial stock of each sku")
    s.add_argument("--customers", type=int, help="number of customers (cust-0001...)")
    s.add_argument("--balance-cents", type=int, help="initial balance of each customer")
    s.add_argument(
        "--price-cents",
        type=int,
        default=DEFAULT_PRICE_CENTS,
        help="unit price `publish --generate` will use",
    )
    s.add_argument(
        "--catalog",
        type=Path,
        help='JSON {"skus": {sku: stock}, "customers": {customer_id: balance_cents}} instead of '
        "the sizes",
    )
    s.add_argument(
        "--force",
        action="store_true",
        help="even while workers are running (history is refused all the same)",
    )
    s.set_defaults(func=_seed)
    s = sub.add_parser("publish", help="publish orders onto " + ORDERS_PLACED.name)
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="one JSON order a line ('-' for stdin)")
    src.add_argument("--generate", type=int, metavar="N", help="N generated orders")
    s.add_argument("--rate", type=float, help="orders per second (default: as fast as possible)")
    s.add_argument("--seed", type=int, help="generator seed (default: the time; printed)")
    s.add_argument("--invalid-share", type=float, default=0.0, help="share of malformed orders")
    s.add_argument("--hot", action="store_true", help="every order buys one of the first sku")
    s.add_argument(
        "--send-invalid",
        action="store_true",
        help="publish invalid file lines raw too (generated ones always are)",
    )
    s.add_argument("--json", action="store_true", help="summary as JSON")
    s.add_argument("--topic", default=ORDERS_PLACED.name, help=argparse.SUPPRESS)  # for tests
    s.set_defaults(func=_publish)
    s = sub.add_parser("order", help="status, reason and timeline of one order")
    s.add_argument("order_id")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--events",
        action="store_true",
        help="also every record on every topic keyed by it, with hop times",
    )
    s.set_defaults(func=_order)
    s = sub.add_parser("report", help="orders by status, dead letters, stock and money")
    s.add_argument("--json", action="store_true")
    s.add_argument("--detail", action="store_true", help="per sku and per customer too")
    s.set_defaults(func=_report)


def _db_errors(func: Command) -> Command:
    """An unreachable database or cluster is the operator's to fix: a message, not a traceback."""

    def wrapped(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return func(args, settings)
        except psycopg2.Error as e:
            raise InfraError(f"database: {str(e).strip()} (is PostgreSQL up? `orderbus status`)")
        except KafkaException as e:
            raise InfraError(f"kafka: {e.args[0]} (is the cluster up? `orderbus status`)")

    return wrapped


# -- seed -----------------------------------------------------------------------------------------


@_db_errors
def _seed(args: argparse.Namespace, settings: Settings) -> int:
    skus, customers = _catalog(args)
    if not args.force:
        busy = active_groups(settings)
        if busy:
            raise UsageError(
                f"workers are running in {', '.join(busy)}; stop them first (or --force to reset "
                "under them)"
            )
    reset_catalog(settings, skus, customers)
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / SEED_FILE).write_text(json.dumps({"price_cents": args.price_cents}) + "\n")
    print(
        f"seeded {len(skus)} skus ({sum(skus.values())} units), {len(customers)} customers "
        f"({sum(customers.values())} cents); orders cleared"
    )
    return 0


def _catalog(args: argparse.Namespace) -> tuple[dict[str, int], dict[str, int]]:
    sizes = {
        "--skus": args.skus,
        "--stock": args.stock,
        "--customers": args.customers,
        "--balance-cents": args.balance_cents,
    }
    if args.price_cents < 0:
        raise UsageError(f"--price-cents {args.price_cents} is negative")
    if args.catalog is not None:
        if any(v is not None for v in sizes.values()):
            raise UsageError("give --catalog or the sizes (--skus ...), not both")
        return load_catalog(args.catalog)
    missing = [k for k, v in sizes.items() if v is None]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (or give --catalog FILE)")
    negative = [f"{k} {v}" for k, v in sizes.items() if v < 0]
    if negative:
        raise UsageError(f"negative: {', '.join(negative)}")
    return (
        {f"sku-{i:04d}": args.stock for i in range(1, args.skus + 1)},
        {f"cust-{i:04d}": args.balance_cents for i in range(1, args.customers + 1)},
    )


# -- publish --------------------------------------------------------------------------------------


@_db_errors
def _publish(args: argparse.Namespace, settings: Settings) -> int:
    if args.rate is not None and args.rate <= 0:
        raise UsageError(f"--rate {args.rate} must be positive")
    summary: dict[str, float] = {}  # counts, seconds and a rate
    source, send_invalid, quiet = _source(args, settings, summary)
    publisher = OrderPublisher(settings.as_principal("producer").kafka(), topic=args.topic)
    progress = _Progress(publisher)
    invalid, invalid_sent = _send(publisher, progress, source, args.rate, send_invalid, quiet)
    undelivered = _drain(publisher, progress, timeout=120)
    progress.show(force=True)
    progress.close()
    seconds = time.monotonic() - progress.start
    summary.update(
        published=publisher.sent,
        delivered=publisher.delivered,
        invalid=invalid,
        invalid_sent=invalid_sent,
        failed=publisher.failed + undelivered,
        seconds=round(seconds, 3),
        orders_per_s=round(publisher.delivered / seconds, 1) if seconds else 0.0,
    )
    if summary["failed"]:
        print(
            f"{summary['failed']} deliveries failed; last error: {publisher.last_error}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"published {summary['published']}, delivered {summary['delivered']}, invalid "
            f"{invalid} ({invalid_sent} sent), failed {summary['failed']} in {seconds:.2f} s "
            f"({summary['orders_per_s']:.0f} orders/s)"
            + (f", seed {summary['seed']}" if "seed" in summary else "")
        )
    return 1 if summary["failed"] else 0


def _source(
    args: argparse.Namespace, settings: Settings, summary: dict[str, float]
) -> tuple[Iterator[tuple[str, bytes]], bool, bool]:
    """What to publish, (where, the order's bytes) each, whether to send the invalid ones too,
    and whether to keep quiet about them."""
    if args.generate is None:
        if args.seed is not None or args.invalid_share or args.hot:
            raise UsageError("--seed, --invalid-share and --hot go with --generate")
        return _lines(args.file), args.send_invalid, False
    if args.generate < 0:
        raise UsageError(f"--generate {args.generate} is negative")
    if not 0.0 <= args.invalid_share <= 1.0:
        raise UsageError(f"--invalid-share {args.invalid_share} is not between 0 and 1")
    skus, customers = seeded_ids(settings)
    seed = int(time.time()) if args.seed is None else args.seed
    summary["seed"] = seed  # ids are o{seed}-{i}: the seed makes a run repeatable
    hot = skus[0] if args.hot else None
    items = generate(
        args.generate, seed, skus, customers, seed_price(settings), args.invalid_share, hot
    )
    # asked for malformed orders: they are the point, sent and not reported one by one
    return ((f"order {i}", value) for i, (value, _, _) in enumerate(items)), True, True


def _send(
    publisher: OrderPublisher,
    progress: _Progress,
    source: Iterator[tuple[str, bytes]],
    rate: float | None,
    send_invalid: bool,
    quiet: bool,
) -> tuple[int, int]:
    """Publish each order of `source`, at `rate` per second if given; (invalid, invalid sent)."""
    invalid = invalid_sent = 0
    for i, (where, value) in enumerate(source):
        if rate:
            _wait_until(publisher, progress, progress.start + i / rate)
        try:
            publisher.publish_line(value)
        except DeadLetter as e:
            invalid += 1
            if not quiet:
                print(f"{where}: {e}" + ("" if send_invalid else " (not sent)"), file=sys.stderr)
            if send_invalid:
                publisher.publish_raw(key_of(value), value)
                invalid_sent += 1
            continue
        progress.show()
    return invalid, invalid_sent


def _lines(name: str) -> Iterator[tuple[str, bytes]]:
    try:
        stream = sys.stdin.buffer if name == "-" else open(name, "rb")
    except OSError as e:
        raise UsageError(f"cannot read {name}: {e.strerror}") from None
    with stream:
        for n, line in enumerate(stream, 1):
            line = line.strip()
            if line:
                yield f"{name}:{n}", line


def _wait_until(publisher: OrderPublisher, progress: _Progress, when: float) -> None:
    while (left := when - time.monotonic()) > 0:
        publisher.poll(min(left, 0.05))  # serve deliveries while pacing
        progress.show()


def _drain(publisher: OrderPublisher, progress: _Progress, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while len(publisher) and time.monotonic() < deadline:
        publisher.poll(0.1)
        progress.show()
    return len(publisher)


class _Progress:
    """One stderr line, rewritten in place on a terminal (5x/s), or a line a second into a log
    once the run has lasted two seconds."""

    def __init__(self, publisher: OrderPublisher, stream: TextIO = sys.stderr) -> None:
        self.publisher, self.stream = publisher, stream
        self.tty = stream.isatty()
        self.start = self.last = time.monotonic()
        self.shown = False

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.tty and now - self.start < 2:
            return
        if not force and now - self.last < (0.2 if self.tty else 1.0):
            return
        self.last, p = now, self.publisher
        rate = p.delivered / max(now - self.start, 1e-6)
        line = f"sent {p.sent}  delivered {p.delivered}  failed {p.failed}  {rate:.0f}/s"
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")


# -- order, report --------------------------------------------------------------------------------


@_db_errors
def _order(args: argparse.Namespace, settings: Settings) -> int:
    view = (
        order_timeline(settings, args.order_id)
        if args.events
        else reports.order_view(settings, args.order_id)
    )
    if view is None:
        print(
            f"orderbus order: no service knows order {args.order_id!r} (never published, not "
            "read by intake yet, or dead-lettered: see `orderbus report`)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(view, indent=2, default=str))
        return 0
    print(
        f"order {view['order_id']}  {view['status'] or 'UNKNOWN'}"
        + (f"  ({view['reason']})" if view["reason"] else "")
    )
    if "customer_id" in view:
        print(f"  customer {view['customer_id']}  total {view['total_cents']} {view['currency']}")
    for service, hold in view["participants"].items():
        print(
            f"  {service + ':':<11}"
            + (
                f"{hold['state']} (voted {hold['vote']})"
                + (f" {hold['reason']}" if hold["reason"] else "")
                if hold
                else "-"
            )
        )
    print(f"  {'shipment:':<11}" + (view["shipment"]["booked_at"] if view["shipment"] else "-"))
    print("TIMELINE")
    for step in view.get("timeline", ()):
        print(f"  {step['at']}  {step['event']}")
    if args.events:
        _print_events(view)
    return 0


def _print_events(view: dict[str, Any]) -> None:
    print("EVENTS")
    for e in view["events"]:
        at = datetime.fromtimestamp(e["at_ms"] / 1000, timezone.utc).isoformat(
            timespec="milliseconds"
        )
        hop = "" if e["hop_ms"] is None else f"+{e['hop_ms']} ms"
        detail = " ".join(f"{k}={v}" for k, v in e["summary"].items())
        print(
            f"  {at} {hop:>10}  {e['topic']}[{e['partition']}]@{e['offset']}  {e['type']}  {detail}"
        )
    for topic, why in view["unread"].items():
        print(f"  not read to its end: {topic}: {why}")


@_db_errors
def _report(args: argparse.Namespace, settings: Settings) -> int:
    report = reports.build_report(settings, detail=args.detail)
    print(json.dumps(report, indent=2) if args.json else reports.render_report(report))
    return 0
