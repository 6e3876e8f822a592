"""replay: re-drive dead letters, reset a stopped group's offsets, rebuild a read model or the
coordinator's state, audit every decision. Each prints what it will do; the destructive ones act
only with --execute. Five tools' argparse and printing make its length; what they do lives in
topics/ (redrive, group_reset) and workers/ (status rebuild, coordinator audit)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from orderbus.commands import Subparsers
from orderbus.ops.errors import UsageError
from orderbus.ops.replay import (
    dlq_execute,
    dlq_plan,
    parse_time,
    reset_effect,
    reset_execute,
    reset_plan,
    status_rebuild,
)
from topics.catalogue import ORDERS_STATUS
from topics.group_reset import ResetSpec
from topics.redrive import DlqFilter
from workers.runtime.settings import Settings
from workers.status.store import LIVE, REBUILD

SHOWN = 20  # lines of detail per list; the counts say how many there are


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "replay", help="recover by replay: dead letters, offsets, read models, audit"
    )
    rs = s.add_subparsers(dest="replay", required=True)

    d = rs.add_parser("dlq", help="re-publish dead letters to their source topic")
    d.add_argument("--reason", help="only dead letters with this dlq.reason")
    d.add_argument(
        "--since",
        type=parse_time,
        metavar="T",
        help="dead-lettered at or after T (ISO 8601, naive = local time; or epoch ms)",
    )
    d.add_argument("--until", type=parse_time, metavar="T", help="dead-lettered before T")
    d.add_argument("--limit", type=_positive, metavar="N", help="at most N re-published")
    d.add_argument(
        "--max-replays",
        type=_positive,
        default=3,
        metavar="N",
        help="a letter re-driven N times already is parked (default 3)",
    )
    d.add_argument(
        "--rate",
        type=float,
        metavar="PER_S",
        help="re-publish at most this many a second (spare a running pipeline)",
    )
    d.add_argument("--execute", action="store_true", help="re-publish (default: dry run)")
    d.set_defaults(func=_dlq)

    r = rs.add_parser(
        "reset",
        help="move a stopped group's committed offsets (as kafka-consumer-groups --reset-offsets)",
    )
    r.add_argument("--group", required=True)
    how = r.add_mutually_exclusive_group(required=True)
    how.add_argument("--to-datetime", type=parse_time, metavar="T")
    how.add_argument("--to-offset", type=int, metavar="O")
    how.add_argument("--shift-by", type=int, metavar="N")
    how.add_argument("--to-earliest", action="store_true")
    how.add_argument("--to-latest", action="store_true")
    r.add_argument(
        "--topic",
        action="append",
        metavar="T[:P,P]",
        help="topic (and partitions); repeatable; default every topic the group has committed "
        "offsets for",
    )
    r.add_argument(
        "--execute", action="store_true", help="commit the new offsets (default: dry run)"
    )
    r.set_defaults(func=_reset)

    b = rs.add_parser("rebuild", help="rebuild a read model or the coordinator's state")
    bs = b.add_subparsers(dest="what", required=True)
    st = bs.add_parser("status", help="the order-status table, from orders.status")
    st.add_argument(
        "--execute",
        action="store_true",
        help="swap the rebuilt table in (default: build and compare only)",
    )
    st.set_defaults(func=_rebuild_status)
    co = bs.add_parser(
        "coordinator", help="open transactions from tx.log vs the coordinator's refold"
    )
    co.add_argument("--json", action="store_true")
    co.set_defaults(func=_rebuild_coordinator)

    a = rs.add_parser(
        "audit",
        help="re-fold tx.log; check every decision against the participants and the status read "
        "model",
    )
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_audit)


def _positive(text: str) -> int:
    n = int(text)
    if n <= 0:
        raise UsageError(f"{n}: must be positive")
    return n


def _ms(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000).isoformat(timespec="seconds")


# -- dlq -------------------------------------------------------------------------------------


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    run = dlq_plan(
        settings, DlqFilter(args.reason, args.since, args.until, args.limit, args.max_replays)
    )
    plan = run.plan
    print(f"{run.topic}: {len(run.letters)} dead letters; replay log {run.log.path}")
    for reason, n in plan.by_reason.most_common():
        chosen = sum(l.reason == reason for l in plan.selected)
        print(f"  {reason:<20} {n:>7}   to re-publish {chosen}")
    print(
        f"  to re-publish {len(plan.selected)}, parked {len(plan.parked)}, already replayed "
        f"{len(plan.done)}, left out by the filters {plan.skipped_by_filter}"
        + (f", over --limit {plan.over_limit}" if plan.over_limit else "")
    )
    for letter, why in plan.parked[:SHOWN]:
        print(f"  parked {letter.id} ({letter.reason}): {why}")
    for letter in plan.selected[:SHOWN]:
        print(
            f"  {letter.id} {_ms(letter.timestamp_ms)} {letter.reason:<16} -> {letter.source} "
            f"key={letter.key!r} replay.count={(letter.count() or 0) + 1}"
        )
    if len(plan.selected) > SHOWN:
        print(f"  ... and {len(plan.selected) - SHOWN} more")
    if not args.execute:
        print("dry run: nothing re-published (add --execute)")
        return 0
    if not plan.selected:
        print("nothing to re-publish")
        return 0
    acked, errors = dlq_execute(settings, run, args.rate)
    print(f"re-published {acked} of {len(plan.selected)} (each logged after its ack)")
    for e in errors[:SHOWN]:
        print(f"orderbus replay dlq: {e}", file=sys.stderr)
    return 1 if errors else 0


# -- reset -----------------------------------------------------------------------------------


def _spec(args: argparse.Namespace) -> ResetSpec:
    if args.to_datetime is not None:
        return ResetSpec("to-datetime", args.to_datetime)
    if args.to_offset is not None:
        return ResetSpec("to-offset", args.to_offset)
    if args.shift_by is not None:
        return ResetSpec("shift-by", args.shift_by)
    return ResetSpec("to-earliest" if args.to_earliest else "to-latest")


def _reset(args: argparse.Namespace, settings: Settings) -> int:
    plans = reset_plan(settings, args.group, _spec(args), args.topic)
    print(
        f"group {args.group}: {_spec(args).kind}"
        + (f" {args.to_datetime} ({_ms(args.to_datetime)})" if args.to_datetime else "")
    )
    print(
        f"  {'topic':<34} {'part':>4} {'current':>9} {'new':>9} {'start':>9} {'end':>9} "
        f"{'lag now':>8} {'lag new':>8}"
    )
    for p in plans:
        cur = "-" if p.current is None else p.current
        lag = "-" if p.lag_before is None else p.lag_before
        print(
            f"  {p.topic:<34} {p.partition:>4} {cur:>9} {p.target:>9} {p.start:>9} {p.end:>9} "
            f"{lag:>8} {p.lag_after:>8}" + (f"  note: {p.note}" if p.note else "")
        )
    for line in reset_effect(settings, args.group, plans):
        print(f"  {line}")
    if not args.execute:
        print("dry run: no offsets changed (add --execute)")
        return 0
    reset_execute(settings, args.group, plans)
    print(f"committed {len(plans)} offsets for group {args.group}")
    return 0


# -- rebuild ---------------------------------------------------------------------------------


def _rebuild_status(args: argparse.Namespace, settings: Settings) -> int:

    print(f"rebuilding {REBUILD} from {settings.names.topic(ORDERS_STATUS)} ...")
    r = status_rebuild(settings, execute=args.execute)
    if r.worker_running:
        print(f"note: {r.group} is running; rows it changes meanwhile show as differences")
    f, c = r.folded, r.comparison
    print(
        f"  {f['events']} status events folded ({f['skipped']} skipped as dead letters) in "
        f"{f['seconds']} s (read {f['read_s']} s)"
    )
    print(
        f"  {LIVE}: {c.live} rows; {REBUILD}: {c.rebuilt} rows; only live {c.only_live}, only "
        f"rebuilt {c.only_rebuilt}, different {c.different}"
    )
    for oid, live, new in c.examples:
        print(f"    {oid}: live {live} rebuilt {new}")
    print("  the rebuilt table equals the live one" if c.equal else "  the tables differ")
    if not r.swapped:
        print(f"dry run: {LIVE} untouched, {REBUILD} left for inspection (add --execute to swap)")
        return 0 if c.equal else 1
    print(f"swapped: {LIVE} now holds the rebuilt rows (one transaction)")
    return 0


def _rebuild_coordinator(args: argparse.Namespace, settings: Settings) -> int:
    from workers.coordinator.audit import rebuild_coordinator

    try:
        r = rebuild_coordinator(settings)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    bad = bool(r["differences"]) or not r["decisions_equal_recorded"]
    if args.json:
        print(json.dumps(r, indent=2))
        return 1 if bad else 0
    print(
        f"{r['topic']}: {r['events']} events, {r['orders']} orders, {r['decided']} decided; "
        f"full fold {r['fold_s']} s, refold {r['refold_s']} s"
    )
    print(
        f"  {'part':>4} {'committed':>9} {'position':>9} {'open(log)':>9} {'open(refold)':>12} "
        f"{'open now':>8}"
    )
    for p in r["partitions"]:
        print(
            f"  {p['partition']:>4} {p['committed']:>9} {p['position']:>9} {p['open_by_log']:>9} "
            f"{p['open_by_refold']:>12} {p['open_now']:>8}"
        )
    for o in r["open"][:SHOWN]:
        state = o["outcome"] or ("in doubt" if o["in_doubt"] else "undecided")
        print(
            f"  open {o['order_id']} [p{o['partition']}] {state}, waiting for "
            f"{', '.join(o['waiting_for']) or '-'}"
        )
    for d in r["differences"][:SHOWN]:
        print(f"  DIFFERENCE {d['kind']} {d['order_id']} [p{d['partition']}]: {d['detail']}")
    for d in r["recorded_differs"][:SHOWN]:
        print(f"  DECISION {d['order_id']}: fold {d['fold']}, recorded {d['recorded']}")
    print(
        "  refold agrees with the full fold; decisions re-derived equal those recorded"
        if not bad
        else "  the coordinator's state or its decisions disagree with tx.log"
    )
    return 1 if bad else 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from workers.coordinator.audit import audit

    try:
        r = audit(settings)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(
            f"audited {r['orders']} decided orders ({r['committed']} committed, {r['aborted']} "
            f"aborted; {r['open']} open) from {r['events']} tx.log events in {r['seconds']} s"
        )
        for m in r["mismatches"][:SHOWN]:
            print(f"  MISMATCH {m['kind']} {m['order_id']}: {m['detail']}")
        if len(r["mismatches"]) > SHOWN:
            print(f"  ... and {len(r['mismatches']) - SHOWN} more")
        if r["pending"]:
            print(
                f"  {len(r['pending'])} not yet applied where the participant has not "
                "acknowledged (in flight, not counted as mismatches)"
            )
        print(
            "  every decision matches the participants and the status read model"
            if not r["mismatches"]
            else f"  {len(r['mismatches'])} mismatches"
        )
    return 1 if r["mismatches"] else 0
