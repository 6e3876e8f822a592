"""Pages and fragments from Jinja2 templates (autoescaped: every figure and name is text, never
markup), the filters they share, and the live panes rendered once per gathering round."""

from __future__ import annotations

import html
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from orderbus.console.mask import mask, masked
from orderbus.ops.top import STATUS_STYLE

HERE = Path(__file__).parent
LIVE_PANES = ("orders", "groups", "partitions", "in_doubt", "stages", "stuck", "alerts", "stamp")


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
    )
    env.filters.update(ms_time=ms_time, seconds=seconds, ms=ms, mask=mask, masked=masked)
    env.globals.update(sparkline=sparkline, status_class=status_class)
    return env


def ms_time(ms: int | float | None) -> str:
    if ms is None or ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if abs(value) < 120 else f"{value / 60:.1f} min"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "> top bucket" if math.isinf(value) else f"{value:,.0f} ms"


def status_class(status: str) -> str:
    """The CSS class of a lag status, by the colour `orderbus top` gives it."""
    return {"green": "ok", "yellow": "warn"}.get(STATUS_STYLE.get(status, ""), "bad")


def sparkline(values: list[int], width: int = 120, height: int = 24) -> Markup:
    """A lag trend as an inline SVG polyline: no script, no chart library."""
    if len(values) < 2:
        return Markup('<span class="dim">trend after two looks</span>')
    top = max(values) or 1
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values)
    )
    label = html.escape(f"lag over the last {len(values)} looks, highest {max(values)}")
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="{label}">'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>'
    )


class Renderer:
    def __init__(self) -> None:
        self.env = environment()

    def page(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    def live(self, data: dict[str, Any]) -> dict[str, str]:
        """SSE event name -> HTML, one per live pane, from one gathering round."""
        out = {
            name: self.env.get_template(f"live/{name}.html").render(**data) for name in LIVE_PANES
        }
        out["stamp"] = html.escape(
            time.strftime("%H:%M:%S", time.localtime(data.get("at", time.time())))
        )
        return out
