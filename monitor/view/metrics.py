"""The heatmap's selectable metrics: key, label, unit, colour scale and a fixed-width cell formatter."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

BUCKETS = 10
"""Colour buckets per metric scale; few enough to survive 256-colour quantisation over SSH."""

MIB_PER_GIB = 1024


def _fmt_int(suffix: str, width: int) -> Callable[[float], str]:
    """A formatter that rounds to an integer and appends `suffix`, right-aligned to `width`."""

    def fmt(value: float) -> str:
        return f"{round(value):d}{suffix}".rjust(width)

    return fmt


def fmt_rate(value: float) -> str:
    """A rate in 4-5 characters with about three significant digits: 0.00, 9.87, 98.7, 1912."""
    if value < 0.005:
        return "0".rjust(5)
    if value < 10:
        return f"{value:.2f}".rjust(5)
    if value < 100:
        return f"{value:.1f}".rjust(5)
    return f"{value:.0f}".rjust(5)


def fmt_count(value: float) -> str:
    """A counter increase in at most 4 characters: 0, 42, 999, 1.2k, 12k, 1.5M."""
    n = round(value)
    if n < 1000:
        return f"{n:d}".rjust(4)
    for divisor, suffix in ((1_000, "k"), (1_000_000, "M"), (1_000_000_000, "G")):
        scaled = n / divisor
        if scaled < 9.95:
            return f"{scaled:.1f}{suffix}".rjust(4)
        if scaled < 999.5:
            return f"{scaled:.0f}{suffix}".rjust(4)
    return "huge"


@dataclass(frozen=True)
class Metric:
    """One selectable heatmap metric.

    Attributes:
        key: the keyboard key that selects it and its id in GpuView.values.
        name: a short id (used in snapshots, CLI flags and tests).
        label: what the heatmap's header calls it.
        unit: the unit of the value (after scaling from the store's integer unit).
        lo: the value at the bottom of the colour scale.
        hi: the value at the top of the colour scale.
        width: characters every formatted cell takes.
        format: the cell text for a value, always exactly `width` characters.
    """

    key: str
    name: str
    label: str
    unit: str
    lo: float
    hi: float
    width: int
    format: Callable[[float], str]

    def cell(self, value: float | None) -> str:
        """The cell text for a value; None (the GPU did not report it) reads as '--'."""
        if value is None or math.isnan(value):
            return "--".rjust(self.width)
        return self.format(value)

    def bucket(self, value: float | None) -> int | None:
        """The colour bucket 0..BUCKETS-1 of a value, or None when there is no value."""
        if value is None or math.isnan(value):
            return None
        span = self.hi - self.lo
        position = (value - self.lo) / span if span > 0 else 0.0
        return min(BUCKETS - 1, max(0, int(position * BUCKETS)))


METRICS: tuple[Metric, ...] = (
    Metric("u", "util", "GPU util", "%", 0, 100, 4, _fmt_int("%", 4)),
    Metric("p", "power", "Power", "W", 0, 1400, 5, _fmt_int("W", 5)),
    Metric("t", "temp", "GPU temp", "C", 25, 90, 4, _fmt_int("C", 4)),
    Metric("m", "mem", "HBM used", "GiB", 0, 284_208 / MIB_PER_GIB, 4, _fmt_int("G", 4)),
    Metric("c", "clock", "SM clock", "MHz", 0, 2070, 4, _fmt_int("", 4)),
    Metric("n", "nvlink", "NVLink TX+RX", "GB/s", 0, 2 * 18 * 53.125, 5, fmt_rate),
    # Any increase is worth a red cell, so the scale tops out at one error.
    Metric("e", "errors", "Errors (NVLink+ECC)", "new", 0, 1, 4, fmt_count),
)
"""Every metric, in the order the keys are listed."""

METRICS_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
METRICS_BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}
