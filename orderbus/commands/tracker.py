"""stuck: the orders the tracker sees past their deadline, from the snapshot it writes every few
seconds, less those the status read model holds final (orderbus/ops/stuck.py); says when the list
cannot be trusted. The tracker itself runs under `orderbus run tracker`."""

from __future__ import annotations

import argparse
import json
import sys

from orderbus.commands import Subparsers
from orderbus.ops.errors import UsageError
from orderbus.ops.stuck import stuck_orders, tracker_lag
from workers.runtime.settings import TRACKER_GRACE_S, Settings
from workers.tracker import snapshot

LISTED = 50


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "stuck",
        help="orders neither shipped nor rejected by their deadline plus a "
        "grace period (exit 1 when there are some)",
    )
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--grace",
        type=float,
        default=TRACKER_GRACE_S,
        metavar="SECONDS",
        help=f"how far past its deadline an order counts as stuck (default {TRACKER_GRACE_S:g})",
    )
    s.set_defaults(func=_stuck)


def _stuck(args: argparse.Namespace, settings: Settings) -> int:
    if args.grace < 0:
        raise UsageError("--grace must not be negative")
    try:
        found = stuck_orders(settings, args.grace, tracker_lag(settings))
    except snapshot.SnapshotError as e:
        print(f"orderbus stuck: {e}", file=sys.stderr)
        return 2
    stuck = found.orders
    if args.json:
        print(
            json.dumps(
                {
                    "grace_s": args.grace,
                    "snapshot_age_s": round(found.snapshot_age_s, 1),
                    "count": len(stuck),
                    "left_out_final": found.left_out_final,
                    "untrusted_because": list(found.untrusted_because),
                    "stuck": stuck,
                },
                indent=2,
            )
        )
        return 1 if stuck else 0
    final = f"{found.left_out_final} final left out, " if found.left_out_final else ""
    about = f"({final}tracker snapshot {found.snapshot_age_s:.0f}s old)"
    if not stuck:
        print(f"no order stuck more than {args.grace:g}s past its deadline {about}")
    else:
        print(f"{len(stuck)} orders stuck more than {args.grace:g}s past their deadline {about}")
    if found.untrusted_because:
        print(f"this list cannot be trusted: {'; '.join(found.untrusted_because)}")
    if not stuck:
        return 0
    print(f"  {'order':<24} {'last stage':<16} {'waiting for':<16} {'past deadline':>13}")
    for s in stuck[:LISTED]:
        print(
            f"  {s['order_id']:<24} {s['stage']:<16} {s['waiting_for']:<16} "
            f"{s['seconds_past_deadline']:>12.1f}s"
        )
    if len(stuck) > LISTED:
        print(
            f"  ... and {len(stuck) - LISTED} more (--json lists up to the snapshot's "
            f"{found.listed})"
        )
    return 1
