"""`orderbus top`: the pipeline in one pane for an incident. `Gatherer.gather()` (top_gather.py)
takes a `Frame` (top_frame.py: pure data, every figure or None with the reason it is missing);
`render(frame)` draws it with rich and is a pure function of the frame, so what an operator sees
is unit-tested without a cluster."""

from __future__ import annotations

import io
import math
import time

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from orderbus.ops.top_frame import OUTCOMES, Frame
from workers.runtime.settings import TRACKER_GRACE_S
from workers.tracker.metrics import MS_BUCKETS

STATUS_STYLE = {
    "OK": "green",
    "WARN": "yellow",
    "STALL": "bold red",
    "STOP": "bold red",
    "ERR": "bold red",
}


# -- rendering: a pure function of the frame


def render(frame: Frame) -> Group:
    when = time.strftime("%H:%M:%S", time.localtime(frame.taken_at))
    title = Text.assemble(
        ("orderbus top", "bold"),
        f"  pipeline {frame.pipeline}  {when}  ",
        ("q or Ctrl-C quits", "dim"),
    )
    return Group(title, _orders(frame), _groups(frame), _stages(frame), _stuck(frame))


def to_text(frame: Frame, width: int = 120) -> str:
    """The frame as plain text, as `--once` prints it to a file or a pipe."""
    text = io.StringIO()
    Console(file=text, width=width, color_system=None, force_terminal=False).print(render(frame))
    return text.getvalue()


def _title(text: str) -> Text:
    return Text(text, style="bold")


def _na(why: str | None) -> Text:
    return Text(f"n/a: {why or 'unknown'}", style="yellow")


def _orders(frame: Frame) -> Group:
    in_doubt = (
        _na(frame.in_doubt_why)
        if frame.in_doubt is None
        else Text(str(frame.in_doubt), style="bold red" if frame.in_doubt else "")
    )
    tail = [
        Text.assemble("in doubt ", in_doubt),
        Text.assemble("dead letters ", _dead_letters(frame)),
    ]
    if frame.counts is None:
        return Group(Text.assemble(("ORDERS ", "italic"), _na(frame.counts_why)), *tail)
    window = f"/s (last {frame.window_s:.1f}s)" if frame.window_s else "/s"
    t = Table()
    t.add_column("outcome")
    t.add_column("total", justify="right")
    t.add_column(window, justify="right")
    for name in ("placed", "pending", "confirmed", "rejected", "shipped"):
        if name not in OUTCOMES:
            rate = ""
        else:
            rate = "n/a" if frame.rates is None else f"{frame.rates.get(name, 0.0):.1f}"
        t.add_row(name, str(frame.counts.get(name, 0)), rate)
    if frame.rates is None:
        tail.insert(0, Text.assemble("rates ", _na(frame.rates_why)))
    return Group(_title("ORDERS"), t, *tail)


def _dead_letters(frame: Frame) -> Text:
    if frame.dead_letters is None:
        return _na(frame.dead_letters_why)
    text = str(frame.dead_letters) + ("" if frame.dead_letters_exact else " (at least)")
    if frame.dead_letters_by_reason:
        reasons = sorted(frame.dead_letters_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
        text += ": " + ", ".join(f"{r} {n}" for r, n in reasons)
    return Text(text)


def _groups(frame: Frame) -> Text | Group:
    if frame.groups is None:
        return Text.assemble(("CONSUMER GROUPS ", "italic"), _na(frame.groups_why))
    under = (
        ""
        if frame.under_replicated is None
        else f", under-replicated partitions {frame.under_replicated}"
    )
    t = Table()
    for name in ("group", "status"):
        t.add_column(name, justify="left")
    for name in ("lag", "oldest unconsumed", "members"):
        t.add_column(name, justify="right")
    for g in frame.groups:
        t.add_row(
            g.group,
            Text(g.status, style=STATUS_STYLE.get(g.status, "")),
            str(g.lag),
            "-" if g.oldest_s is None else f"{g.oldest_s:.1f}s",
            "?" if g.members is None else str(g.members),
        )
    if not frame.groups:
        t.add_row("(no consumer group of this pipeline)", "", "", "", "")
    return Group(_title(f"CONSUMER GROUPS ({len(frame.groups)}{under})"), t)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return f"> {MS_BUCKETS[-1]:,} ms"
    return f"{value:,.0f} ms"


def _stages(frame: Frame) -> Text | Group:
    if frame.stages is None:
        return Text.assemble(("STAGE LATENCY p99 ", "italic"), _na(frame.stages_why))
    window = f"last {frame.window_s:.1f}s" if frame.window_s else "window"
    t = Table()
    for name in ("stage", f"n ({window})", f"p99 ({window})", "p99 (since tracker start)"):
        t.add_column(name, justify="left" if name == "stage" else "right")
    for s in frame.stages:
        t.add_row(s.stage, str(s.window_count), _ms(s.window_p99_ms), _ms(s.total_p99_ms))
    if not frame.stages:
        t.add_row("(no latency observed yet)", "", "", "")
    return Group(_title(f"STAGE LATENCY p99 (tracker at {frame.stages_source})"), t)


def _stuck(frame: Frame) -> Text | Group:
    if frame.stuck is None:
        return Text.assemble(("STUCK ORDERS ", "italic"), _na(frame.stuck_why))
    age = (
        ""
        if frame.snapshot_age_s is None
        else f", tracker snapshot {frame.snapshot_age_s:.0f}s old"
    )
    final = f", {frame.stuck_left_out_final} final left out" if frame.stuck_left_out_final else ""
    title = _title(
        f"STUCK ORDERS ({frame.stuck_total} more than {TRACKER_GRACE_S:g}s past their "
        f"deadline{final}{age})"
    )
    parts: list[Text] = [title]
    if frame.stuck_untrusted_because:
        why = "; ".join(frame.stuck_untrusted_because)
        parts.append(Text(f"this list cannot be trusted: {why}", style="bold yellow"))
    if not frame.stuck:
        return Group(*parts)
    t = Table()
    for name in ("order", "last stage", "waiting for", "past deadline"):
        t.add_column(name, justify="right" if name == "past deadline" else "left")
    for s in frame.stuck:
        t.add_row(s.order_id, s.stage, s.waiting_for, f"{s.seconds_past_deadline:.1f}s")
    if frame.stuck_total > len(frame.stuck):
        more = frame.stuck_total - len(frame.stuck)
        t.add_row(f"... and {more} more (orderbus stuck)", "", "", "")
    return Group(*parts, t)
