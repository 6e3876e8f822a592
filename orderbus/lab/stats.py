"""The one percentile every lab figure uses."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The value at quantile `q` (0..1) of `values`, nearest rank; None when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else None


def ms(values: Sequence[float], q: float) -> float:
    """A latency percentile in milliseconds for a report, to 0.1 ms (0.0 when there are none)."""
    return round(percentile(values, q) or 0.0, 1)
