"""`orderbus chaos --plot`: a run's decisions per second with the faults marked. matplotlib is
an optional extra (`pip install 'orderbus[plot]'`): only `--plot` imports this module, and the
command checks it is there before the run starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt

COLOURS = {
    "worker-kill": "tab:red",
    "worker-pause": "tab:orange",
    "worker-churn": "tab:olive",
    "broker-kill": "tab:purple",
    "broker-pause": "tab:blue",
    "pg-restart": "tab:green",
    "clock-ahead": "tab:brown",
    "clock-behind": "tab:brown",
    "net-broker": "tab:cyan",
    "net-controller": "tab:cyan",
    "net-oneway": "tab:cyan",
    "net-worker-kafka": "tab:pink",
    "net-worker-pg": "tab:pink",
    "net-loss": "tab:gray",
}


def plot(r: dict[str, Any], path: Path) -> None:
    """Decisions per second with each fault marked, its hold shaded and its recovery a bar."""
    matplotlib.use("Agg")  # no display: write the file only

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
            f" {f['kind']} {f['target']}\n recovery {rec}"
            if len(r["faults"]) <= 20
            else f" {f['kind']} {rec}"
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
