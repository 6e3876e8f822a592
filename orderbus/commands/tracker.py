"""stuck: the orders the tracker sees past their deadline, from the snapshot it writes every few
seconds (the tracker itself runs under `orderbus run tracker`)."""

from __future__ import annotations

import json
import sys
import time

from orderbus.ops.errors import UsageError
from workers.runtime.settings import TRACKER_GRACE_S
from workers.tracker import snapshot

LISTED = 50


def register(sub) -> None:
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


def _stuck(args, settings) -> int:
    if args.grace < 0:
        raise UsageError("--grace must not be negative")
    try:
        snap = snapshot.read(settings)
    except snapshot.SnapshotError as e:
        print(f"orderbus stuck: {e}", file=sys.stderr)
        return 2
    stuck = [s for s in snap["stuck"] if s["seconds_past_deadline"] > args.grace]
    age_s = max(0.0, time.time() - snap["written_at_ms"] / 1000)
    if args.json:
        print(
            json.dumps(
                {"grace_s": args.grace, "snapshot_age_s": round(age_s, 1), "count": len(stuck), "stuck": stuck},
                indent=2,
            )
        )
        return 1 if stuck else 0
    if not stuck:
        print(f"no order stuck more than {args.grace:g}s past its deadline (tracker snapshot {age_s:.0f}s old)")
        return 0
    print(
        f"{len(stuck)} orders stuck more than {args.grace:g}s past their deadline "
        f"(tracker snapshot {age_s:.0f}s old)"
    )
    print(f"  {'order':<24} {'last stage':<16} {'waiting for':<16} {'past deadline':>13}")
    for s in stuck[:LISTED]:
        print(
            f"  {s['order_id']:<24} {s['stage']:<16} {s['waiting_for']:<16} {s['seconds_past_deadline']:>12.1f}s"
        )
    if len(stuck) > LISTED:
        print(f"  ... and {len(stuck) - LISTED} more (--json lists up to the snapshot's {len(snap['stuck'])})")
    return 1
