"""The heatmap's selectable metrics: key, label, unit, colour scale and a fixed-width cell formatter.

A scale's buckets have round lower bounds in the metric's unit, so the legend's tick labels are distinct
numbers an operator can read back (0 280 560 ... W, not `980 1k 1k`); error counts go on a log scale
(1 and 3,100 errors are different colours); NVLink is auto-ranged to what the rack moves, since its
ceiling (about 1,900 GB/s a GPU) would paint a rack at 12 GB/s a GPU one colour. No UI toolkit here.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from monitor.view.deadband import Deadband

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
class Scale:
    """A colour scale: the lower bound of each bucket, ascending, and the legend's label for each.

    Attributes:
        edges: bucket b holds the values from edges[b] up to edges[b + 1] (the last bucket is open
            above, the first below).
        labels: one tick label per bucket ('' for none: the open first bucket of a diverging scale).
        unit: what the legend calls the unit ('%', 'W', 'GB/s', 'err', 'dev%').
        diverging: the buckets run from far below a centre to far above it (deviation mode's colours).
    """

    edges: tuple[float, ...]
    labels: tuple[str, ...]
    unit: str
    diverging: bool = False

    @property
    def buckets(self) -> int:
        """How many colour buckets the scale has."""
        return len(self.edges)

    def bucket(self, value: float | None) -> int | None:
        """The bucket 0..buckets-1 of a value, or None when there is no value."""
        if value is None or math.isnan(value):
            return None
        return max(0, bisect.bisect_right(self.edges, value) - 1)

    def legend(self, room: int) -> tuple[str, ...]:
        """The labels to print, one per bucket, where each bucket's swatch is `room` characters wide.

        Every label when each fits with a space to spare; else every second or fifth one (a label
        may then spill over the unlabelled swatches after it), so no two labels run together.
        """
        labels = self.labels
        first = 1 if labels and not labels[0] else 0
        for stride in (1, 2, 5):
            shown = [b for b in range(first, len(labels), stride)]
            if all(len(labels[b]) < room * stride for b in shown):
                return tuple(labels[b] if b in shown else "" for b in range(len(labels)))
        return tuple(labels[b] if b == first else "" for b in range(len(labels)))


def _number(value: float) -> str:
    """A tick label: an integer when the value is one, else one decimal."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def linear_scale(lo: float, step: float, unit: str, buckets: int = BUCKETS) -> Scale:
    """`buckets` buckets of `step` from `lo`: round steps give round, distinct tick labels."""
    edges = tuple(lo + b * step for b in range(buckets))
    return Scale(edges, tuple(_number(e) for e in edges), unit)


def count_label(value: float) -> str:
    """A count as a tick label: 3, 30, 300, 3k, 30k."""
    if value >= 1000:
        return f"{value / 1000:.0f}k"
    return f"{value:.0f}"


ERROR_EDGES = (0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10_000)
"""Error counts by order of magnitude: one error is one bucket above none, 3,100 seven above that."""

ERROR_SCALE = Scale(ERROR_EDGES, tuple(count_label(e) for e in ERROR_EDGES), "err")

DEVIATION_EDGES = (-math.inf, -20.0, -10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0, 20.0)
"""Percent off the group's median: narrow buckets near it, so noise stays in the two middle ones."""

DEVIATION_SCALE = Scale(
    DEVIATION_EDGES,
    tuple("" if e == -math.inf else f"{e:+.0f}" if e else "0" for e in DEVIATION_EDGES),
    "dev%",
    diverging=True,
)

NICE_STEPS = (1.0, 2.0, 5.0)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least `value` (1 for 0 or less)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (*NICE_STEPS, 10.0):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop ends at 10 * magnitude >= value


def auto_top(current: float | None, peak: float | None) -> float | None:
    """The top of an auto-ranged scale for a rack whose busiest GPU is at `peak`.

    It moves up as soon as `peak` passes it and down only when `peak` falls below 30 % of it (well
    under the step it came up from), so a peak that hovers near a round number does not flip the
    scale (and recolour the rack) every tick.
    """
    if peak is None:
        return current
    if current is not None and 0.3 * current <= peak <= current:
        return current
    return nice_ceiling(peak)


@dataclass(frozen=True)
class Metric:
    """One selectable heatmap metric.

    Attributes:
        key: the keyboard key that selects it and its id in GpuView.values.
        name: a short id (used in snapshots, CLI flags and tests).
        label: what the heatmap's header calls it.
        unit: the unit of the value (after scaling from the store's integer unit).
        scale: the colour scale (for an auto-ranged metric, the one used before any data).
        width: characters every formatted cell takes.
        format: the cell text for a value, always exactly `width` characters.
        auto: the scale follows the rack's busiest GPU (auto_top) instead of the metric's ceiling.
        band: how far a value may wander before its cell follows it (None: every change shows).
        floor: deviation mode divides by the median, but by no less than this (a median near 0).
    """

    key: str
    name: str
    label: str
    unit: str
    scale: Scale
    width: int
    format: Callable[[float], str]
    auto: bool = False
    band: Deadband | None = None
    floor: float = 1.0
    short_unit: str = field(default="")
    """The unit a second-line figure carries when `format` writes none ('MHz' after a clock)."""

    @property
    def lo(self) -> float:
        """The bottom of the colour scale (its first bucket's lower bound)."""
        return self.scale.edges[0]

    def cell(self, value: float | None) -> str:
        """The cell text for a value; None (the GPU did not report it) reads as '--'."""
        if value is None or math.isnan(value):
            return "--".rjust(self.width)
        return self.format(value)

    def figure(self, value: float | None) -> str:
        """The value as a short figure with its unit ('1184W', '2070MHz', '7.92GB/s')."""
        text = self.cell(value).strip()
        return text if value is None or math.isnan(value) else text + self.short_unit

    def bucket(self, value: float | None) -> int | None:
        """The colour bucket of a value on the metric's own scale, or None when there is no value."""
        return self.scale.bucket(value)

    def auto_scale(self, top: float) -> Scale:
        """The metric's scale reaching up to `top` in BUCKETS equal, round steps."""
        return linear_scale(0.0, top / BUCKETS, self.unit)


METRICS: tuple[Metric, ...] = (
    Metric(
        "u",
        "util",
        "GPU util",
        "%",
        linear_scale(0, 10, "%"),
        4,
        _fmt_int("%", 4),
        band=Deadband(0.0, 5.0),
        floor=10.0,
    ),
    Metric(
        "p",
        "power",
        "Power",
        "W",
        linear_scale(0, 140, "W"),
        5,
        _fmt_int("W", 5),
        band=Deadband(0.05, 30.0),
        floor=100.0,
    ),
    Metric(
        "t",
        "temp",
        "GPU temp",
        "C",
        linear_scale(40, 5, "C"),
        4,
        _fmt_int("C", 4),
        band=Deadband(0.0, 1.5),
        floor=10.0,
    ),
    Metric(
        "m",
        "mem",
        "HBM used",
        "GiB",
        linear_scale(0, 28, "GiB"),
        4,
        _fmt_int("G", 4),
        band=Deadband(0.01, 1.0),
        floor=10.0,
    ),
    Metric(
        "c",
        "clock",
        "SM clock",
        "MHz",
        linear_scale(0, 210, "MHz"),
        4,
        _fmt_int("", 4),
        band=Deadband(0.02, 20.0),
        floor=100.0,
        short_unit="MHz",
    ),
    Metric(
        "n",
        "nvlink",
        "NVLink TX+RX",
        "GB/s",
        linear_scale(0, 200, "GB/s"),
        5,
        fmt_rate,
        auto=True,
        band=Deadband(0.05, 0.05),
        floor=1.0,
        short_unit="GB/s",
    ),
    # Counts are exact: no band, and a log scale so one error and thousands differ.
    Metric("e", "errors", "Errors (NVLink+ECC)", "new", ERROR_SCALE, 4, fmt_count, short_unit="err"),
)
"""Every metric, in the order the keys are listed."""

METRICS_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
METRICS_BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}
