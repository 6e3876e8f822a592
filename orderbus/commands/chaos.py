"""chaos: the pipeline under load while workers, brokers and PostgreSQL fail; then verify."""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from orderbus.commands import Subparsers
from orderbus.ops.errors import UsageError
from workers.runtime.settings import Settings


def register(sub: Subparsers) -> None:
    from orderbus.lab.chaos.plan import KINDS

    s = sub.add_parser(
        "chaos", help="inject faults into a sandbox pipeline under load, then verify"
    )
    s.add_argument(
        "--duration",
        type=float,
        required=True,
        metavar="S",
        help="seconds of load (it runs on while the last fault is being undone)",
    )
    s.add_argument(
        "--faults",
        default="",
        metavar="LIST",
        help=f"comma-separated fault kinds of {','.join(KINDS)} (default: every kind the cluster "
        "allows; the net-* kinds need `orderbus up --hosts`)",
    )
    s.add_argument("--rate", type=float, default=100.0, help="offered orders/s (default 100)")
    s.add_argument(
        "--seed",
        type=int,
        default=None,
        help="fault times, targets and orders (default: a random seed, printed)",
    )
    s.add_argument("--instances", type=int, default=2, help="instances of each worker (default 2)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--plot", metavar="FILE.png", help="decisions per second with the faults marked")
    s.add_argument(
        "--keep",
        action="store_true",
        help="keep the sandbox's topics and databases "
        "when verify finds a violation or the run fails, to inspect them",
    )
    s.set_defaults(func=_chaos)


def _chaos(args: argparse.Namespace, settings: Settings) -> int:
    from orderbus.lab.chaos import measure, plan, run

    allowed = plan.KINDS if settings.hosts else plan.PROCESS_KINDS + plan.CLOCK_KINDS
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()] or list(allowed)
    try:
        plan.check_kinds(kinds)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if set(kinds) - set(allowed):
        raise UsageError(
            f"{', '.join(sorted(set(kinds) - set(allowed)))}: network faults need hosts of their "
            "own (`orderbus down`, then `orderbus up --hosts` on a fresh ORDERBUS_HOME)"
        )
    if args.duration <= 0 or args.rate <= 0 or args.instances < 1:
        raise UsageError("--duration and --rate must be positive, --instances at least 1")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot {args.plot}: the plot is a PNG file; name it FILE.png")
    if args.plot:
        try:  # before the run, not after it: its result would be lost
            import matplotlib  # noqa: F401
        except ModuleNotFoundError:
            raise UsageError(
                "--plot needs matplotlib: pip install 'orderbus[plot]' (or matplotlib)"
            ) from None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    planned = plan.plan(kinds, args.duration, seed)
    missing = sorted(set(kinds) - {p.kind for p in planned})
    if missing:
        raise UsageError(
            f"--duration {args.duration:g} leaves no room for {', '.join(missing)} "
            f"(with seed {seed}); {plan.duration_for_all(kinds):g} s fits every "
            "requested kind whatever the seed"
        )
    log = (
        (lambda m: print(m, file=sys.stderr, flush=True))
        if args.json
        else (lambda m: print(m, flush=True))
    )
    result = run.run(
        settings, args.duration, kinds, args.rate, seed, args.instances, log=log, keep=args.keep
    )
    result["recovery_by_kind"] = measure.summary_by_kind(result["faults"])
    if args.plot:
        from orderbus.lab.chaos.plot import plot  # matplotlib, an optional extra: checked above

        plot(result, Path(args.plot))
        result["plot"] = args.plot
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    return 1 if result["violations"] else 0


def render(r: dict[str, Any]) -> str:
    from orderbus.ops.verify import render as render_verify

    o = r["orders"]
    lines = [
        f"chaos seed {r['seed']}: {r['load_s']} s of load at {r['rate']:g} orders/s, "
        f"{r['instances']} instance(s) per worker, sandbox {r['sandbox']}",
        f"  orders      {o['published']} published, {o['confirmed']} confirmed, "
        f"{o['rejected']} rejected, {o['dead_lettered']} dead-lettered"
        + (f", {o['undelivered']} undelivered" if o["undelivered"] else ""),
        "  faults        at_s  kind          target     held_s  lifted_s  recovery_s  stalled",
    ]
    for f in r["faults"]:
        rec = "never" if f["recovery_s"] is None else f"{f['recovery_s']:.2f}"
        role = f" ({f['role']})" if f["role"] else ""
        lines.append(
            f"              {f['at_s']:6.1f}  {f['kind']:<12}  {f['target']:<10} "
            f"{f['hold_s']:6.1f}  {f['lifted_s'] or 0:8.1f}  {rec:>10}  "
            f"{','.join(map(str, f['stalled_partitions'])) or '-'}{role}"
            + (
                f"  (already stalled: {','.join(map(str, f['stalled_before']))})"
                if f.get("stalled_before")
                else ""
            )
            + (f"  [{f['note']}]" if f["note"] else "")
        )
    for kind, s in r.get("recovery_by_kind", {}).items():
        lines.append(
            f"  recovery    {kind:<12}  p50 {s['p50_s']} s, max {s['max_s']} s over "
            f"{s['faults']}"
            + (f", {s['unrecovered']} never" if s["unrecovered"] else "")
            + (
                f"; publishing waited at most {s['publish_stall_max_s']} s"
                if s.get("publish_stall_max_s") is not None
                else ""
            )
        )
    lines.append(
        f"  longest gap {r['max_gap_s']:.2f} s with no decision (from {r['max_gap_at_s']:.1f} s)"
    )
    lines.append(f"  restarts    {r['worker_restarts']} worker restarts by the supervisor")
    if r["halted"]:
        lines.append("  HALTED      no decision in the last 60 s although orders were undecided")
    verdict = {**r["verify"], "violations": r["violations"]}
    lines += ["  " + line for line in render_verify(verdict).splitlines()]
    if r["violations"]:
        lines.append(f"  worker logs in {r['log_dir']}")
    return "\n".join(lines)
