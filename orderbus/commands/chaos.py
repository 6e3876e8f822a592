"""chaos: the pipeline under load while workers, brokers and PostgreSQL fail; then verify."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from orderbus.ops.errors import UsageError


def register(sub) -> None:
    from orderbus.lab.chaos.plan import KINDS

    s = sub.add_parser("chaos", help="inject faults into a sandbox pipeline under load, then verify")
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
        help=f"comma-separated fault kinds of {','.join(KINDS)} (default: every kind the cluster allows; "
        "the net-* kinds need `orderbus up --hosts`)",
    )
    s.add_argument("--rate", type=float, default=100.0, help="offered orders/s (default 100)")
    s.add_argument(
        "--seed", type=int, default=None, help="fault times, targets and orders (default: a random seed, printed)"
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


def _chaos(args, settings) -> int:
    from orderbus.lab.chaos import measure, plan, run

    allowed = plan.KINDS if settings.hosts else plan.PROCESS_KINDS + plan.CLOCK_KINDS
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()] or list(allowed)
    unknown = [k for k in kinds if k not in plan.KINDS]
    if unknown:
        raise UsageError(f"unknown fault kind(s) {', '.join(unknown)}; one of {', '.join(plan.KINDS)}")
    if set(kinds) - set(allowed):
        raise UsageError(
            f"{', '.join(sorted(set(kinds) - set(allowed)))}: network faults need hosts of their own "
            "(`orderbus down`, then `orderbus up --hosts` on a fresh ORDERBUS_HOME)"
        )
    if args.duration <= 0 or args.rate <= 0 or args.instances < 1:
        raise UsageError("--duration and --rate must be positive, --instances at least 1")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot {args.plot}: the plot is a PNG file; name it FILE.png")
    if args.plot:
        try:  # before the run, not after it: its result would be lost
            import matplotlib  # noqa: F401
        except ModuleNotFoundError:
            raise UsageError("--plot needs matplotlib: pip install 'orderbus[plot]' (or matplotlib)") from None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    planned = plan.plan(kinds, args.duration, seed)
    missing = sorted(set(kinds) - {p.kind for p in planned})
    if missing:
        raise UsageError(
            f"--duration {args.duration:g} leaves no room for {', '.join(missing)} "
            f"(with seed {seed}); {plan.duration_for_all(kinds):g} s fits every "
            "requested kind whatever the seed"
        )
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    result = run.run(settings, args.duration, kinds, args.rate, seed, args.instances, log=log, keep=args.keep)
    result["recovery_by_kind"] = measure.summary_by_kind(result["faults"])
    if args.plot:
        plot(result, Path(args.plot))
        result["plot"] = args.plot
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    return 1 if result["violations"] else 0


def render(r: dict) -> str:
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
    lines.append(f"  longest gap {r['max_gap_s']:.2f} s with no decision (from {r['max_gap_at_s']:.1f} s)")
    lines.append(f"  restarts    {r['worker_restarts']} worker restarts by the supervisor")
    if r["halted"]:
        lines.append("  HALTED      no decision in the last 60 s although orders were undecided")
    verdict = {**r["verify"], "violations": r["violations"]}
    lines += ["  " + line for line in render_verify(verdict).splitlines()]
    if r["violations"]:
        lines.append(f"  worker logs in {r['log_dir']}")
    return "\n".join(lines)


COLOURS = {
    "worker-kill": "tab:red",
    "worker-pause": "tab:orange",
    "worker-churn": "tab:olive",
    "broker-kill": "tab:purple",
    "broker-pause": "tab:blue",
    "pg-restart": "tab:green",
}


def plot(r: dict, path: Path) -> None:
    import matplotlib  # there: _chaos checked before the run

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    counts = r["per_second"]
    fig, ax = plt.subplots(figsize=(13, 5))
    ax.bar(
        range(len(counts)),
        counts,
        width=1.0,
        align="edge",
        color="0.55",
        label="decisions/s (CONFIRMED + REJECTED)",
    )
    top = max(counts, default=1) * 1.25 or 1
    ax.set_ylim(0, top)
    ax.axvline(r["load_s"], color="black", linestyle=":", linewidth=1)
    ax.text(r["load_s"], top * 0.97, " load stops", fontsize=8, va="top")
    for f in r["faults"]:
        c = COLOURS.get(f["kind"], "black")
        ax.axvline(f["at_s"], color=c, linewidth=1.5)
        end = f["lifted_s"] or f["at_s"]
        if end > f["at_s"]:
            ax.axvspan(f["at_s"], end, color=c, alpha=0.12)
        if f["recovery_s"]:
            ax.plot(
                [f["at_s"], f["at_s"] + f["recovery_s"]],
                [top * 0.05] * 2,
                color=c,
                linewidth=3,
                solid_capstyle="butt",
            )
        rec = "never" if f["recovery_s"] is None else f"{f['recovery_s']:.1f}s"
        # a long run has too many faults for full labels: the colour and the kind suffice
        label = (
            f" {f['kind']} {f['target']}\n recovery {rec}" if len(r["faults"]) <= 20 else f" {f['kind']} {rec}"
        )
        ax.text(
            f["at_s"],
            top * 0.97,
            label,
            color=c,
            fontsize=7 if len(r["faults"]) <= 20 else 5,
            rotation=90,
            va="top",
            ha="right",
        )
    g, at = r["max_gap_s"], r["max_gap_at_s"]
    ax.annotate(
        f"longest gap {g:.1f}s",
        xy=(at + g / 2, 0),
        xytext=(at + g / 2, top * 0.2),
        fontsize=8,
        ha="center",
        arrowprops={"arrowstyle": "->", "color": "black"},
    )
    ax.set_xlim(0, len(counts))
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("decisions per second")
    verdict = "clean" if not r["violations"] else f"{len(r['violations'])} VIOLATIONS"
    ax.set_title(
        f"orderbus chaos, seed {r['seed']}: {r['rate']:g} orders/s, {r['instances']} "
        f"instances per worker; verify {verdict}  (bar under a fault = its recovery)"
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
