"""report.html's charts: per-GPU heatmaps and rack timelines as inline SVG on one shared time axis.

Every mark a chart draws lies inside its plot area (tests/post/test_report_browser.py checks it in a
real browser); events and each suspect's onset are labelled vertical ticks on the timelines.
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from collectors.rack import GPUS, GPUS_PER_TRAY, gpu_label
from monitor.timespec import Window, iso
from storage.reader import StoreReader

COLUMNS = 120
"""Time buckets across a heatmap or timeline: enough to see a fault's onset, small enough to stay light."""
HEATMAPS = (
    ("power_mw / 1000.0", "Power", "W"),
    ("temp_gpu_c", "GPU temperature", "C"),
    ("sm_clock_mhz", "SM clock", "MHz"),
    ("util_gpu_pct", "GPU utilisation", "%"),
)
PALETTE = ("#30123b", "#4145ab", "#4675ed", "#39a2fc", "#1bcfd4", "#24eca6", "#61fc6c", "#a4fc3b",
           "#d1e834", "#f3c63a", "#fe9b2d", "#f36315", "#d93806", "#b11901", "#7a0403")  # fmt: skip
"""Turbo, 15 steps: readable on screen and in print, distinct from the grey of missing cells."""
EVENT_COLOURS = {
    "xid": "#d00",
    "gpu_lost": "#d00",
    "recording_stopped": "#d00",
    "gpu_recovered": "#2a2",
    "recording_resumed": "#2a2",
    "link_down": "#e80",
    "endpoint_down": "#e80",
}
"""Event lines on the timelines: red for a GPU gone, an XID or recording stopped, orange for a link or
endpoint down, green for a GPU back or recording resumed; every other kind grey."""
ONSET_COLOUR = "#7b2fbe"
"""A suspect's onset line and label: purple, apart from every event colour."""
FLAT_SPREAD = 0.5
"""A heatmap whose values span less than this (in its unit) is flat: its legend would read 'v .. v'."""
FLAT_COLOUR = "#8a8f98"
"""A flat map's one colour: a neutral grey-blue, neither end of the palette (its lowest reads as 'low')
and darker than the light grey of missing cells."""
LEFT, TOP, CELL_H = 46, 8, 5
LINK_MINUTES_FROM_MS = 10_000
"""An axis step from which the NVLink timelines step by whole minutes (see Axis)."""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def hhmm(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


class Axis:
    """Maps data time to x pixels, shared by every chart so their time axes line up."""

    def __init__(self, first_ms: int, last_ms: int, width: int = 960) -> None:
        self.first, self.last, self.width = first_ms, max(last_ms, first_ms + 1), width
        step = max(1, math.ceil((self.last - self.first + 1) / COLUMNS))
        # Steps of whole minutes past two hours: counter rates then come from the 1 min rollups
        # (storage.counter_rates) instead of a window over every raw NVLink row.
        self.step_ms = -(-step // 60_000) * 60_000 if step > 60_000 else step
        self.buckets = math.ceil((self.last - self.first + 1) / self.step_ms)
        # The NVLink timelines rate 1,296 link series per counter: from a step of LINK_MINUTES_FROM_MS
        # (windows past 20 minutes) they step by whole minutes, read from the 1 min rollups, where
        # steps under a minute would take a window function over every raw NVLink row (28 s for an
        # hour's report.html under load, against 1-2 s). The other charts keep the finer step.
        self.link_step_ms = self.step_ms if step < LINK_MINUTES_FROM_MS else max(self.step_ms, 60_000)

    def x(self, ms: float) -> float:
        return LEFT + (ms - self.first) / (self.last - self.first) * (self.width - LEFT - 10)

    def ticks(self, y: float) -> str:
        out = []
        for i in range(6):
            ms = self.first + (self.last - self.first) * i / 5
            # The last label ends at its tick: centred, it would run past the chart's right edge.
            anchor = "end" if i == 5 else "middle"
            out.append(f'<text x="{self.x(ms):.1f}" y="{y}" text-anchor="{anchor}">{hhmm(ms)}</text>')
        return "".join(out)

    def mid(self, start_ms: float, step_ms: int | None = None) -> float:
        """The middle of the step (step_ms, default the axis step) from start_ms, inside the axis."""
        width = self.step_ms if step_ms is None else step_ms
        lo, hi = max(start_ms, self.first), min(start_ms + width - 1, self.last)
        return min(max((lo + hi) / 2, self.first), self.last)

    def bucket_sql(self) -> str:
        return f"((epoch_ms(ts) - {self.first}) // {self.step_ms})"


def _cell(first: int, end: int, cell_w: float, axis: Axis, y: int, colour: str) -> str:
    """Buckets first..end-1 of a heatmap row as one rect. It overlaps its right neighbour by 0.3 px (no
    hairline of background between them) but stops at the plot area's edge, rounding included."""
    right = LEFT + axis.buckets * cell_w
    x0 = round(LEFT + first * cell_w, 1)
    x1 = round(min(right, LEFT + end * cell_w + 0.3), 1)
    return f'<rect x="{x0:.1f}" y="{y}" width="{x1 - x0:.1f}" height="{CELL_H}" fill="{colour}"/>'


def _colour(value: float | None, lo: float, hi: float) -> str:
    """A cell's colour: grey where missing, FLAT_COLOUR for every cell of a flat map, else the palette's."""
    if value is None or not math.isfinite(value):
        return "#ccc"
    if hi - lo < FLAT_SPREAD:
        return FLAT_COLOUR
    share = (value - lo) / (hi - lo)
    return PALETTE[min(len(PALETTE) - 1, max(0, int(share * len(PALETTE))))]


Grid = dict[int, dict[int, float]]
"""A heatmap's cells: GPU -> time bucket -> value (missing cells absent)."""


def heatmap_grids(reader: StoreReader, window: Window, axis: Axis) -> list[Grid]:
    """Every heatmap's cells (HEATMAPS order): the mean per GPU and time bucket, in one pass over the rows."""
    rel = reader.relation("gpu", window.since_ms, window.until_ms)
    means = ", ".join(f"avg({expr}) AS v{i}" for i, (expr, _, _) in enumerate(HEATMAPS))
    rows = reader.sql(f"SELECT gpu, {axis.bucket_sql()} AS b, {means} FROM {rel} GROUP BY ALL")
    gpus, buckets = rows.column("gpu").to_pylist(), rows.column("b").to_pylist()
    grids: list[Grid] = []
    for i in range(len(HEATMAPS)):
        grid: Grid = {}
        for g, b, v in zip(gpus, buckets, rows.column(f"v{i}").to_pylist(), strict=True):
            if v is not None:
                grid.setdefault(g, {})[b] = v
        grids.append(grid)
    return grids


def heatmap(axis: Axis, grid: Grid, title: str, unit: str) -> str:
    """One heatmap: a row per GPU, a cell per time bucket, coloured from its lowest to its highest value."""
    values = [v for cells in grid.values() for v in cells.values()]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    cell_w = (axis.width - LEFT - 10) / axis.buckets
    height = TOP + GPUS * CELL_H + 40
    parts = [f'<svg width="{axis.width}" height="{height}" role="img" aria-label="{esc(title)} per GPU">']
    parts.append(plot_area(axis, TOP, GPUS * CELL_H))
    for g, cells in sorted(grid.items()):
        y = TOP + g * CELL_H
        parts.append(f'<g class="marks"><title>{esc(gpu_label(g))}</title>')
        run_start, run_colour = 0, None
        # Neighbouring buckets of one colour become one rect: a calm GPU row is a handful of shapes.
        for b in range(axis.buckets + 1):
            colour = _colour(cells.get(b), lo, hi) if b < axis.buckets else None
            if colour != run_colour:
                if run_colour is not None and run_colour != "#ccc":
                    parts.append(_cell(run_start, b, cell_w, axis, y, run_colour))
                run_start, run_colour = b, colour
        parts.append("</g>")
    for tray in range(1, GPUS // GPUS_PER_TRAY + 1, 2):
        y = TOP + (tray - 1) * GPUS_PER_TRAY * CELL_H + 2 * CELL_H + 4
        parts.append(f'<text x="4" y="{y}">T{tray:02d}</text>')
    parts.append(axis.ticks(TOP + GPUS * CELL_H + 14))
    parts.append(f'<text x="{LEFT}" y="{height - 5}">{title} ({unit})</text>')
    parts += _legend(lo, hi, unit, height)
    parts.append("</svg>")
    return "".join(parts)


def _legend(lo: float, hi: float, unit: str, height: int) -> list[str]:
    """The palette from lo to hi; a flat map's one swatch and 'all 2070 MHz' instead."""
    if hi - lo < FLAT_SPREAD:
        return [
            f'<rect x="{LEFT + 200}" y="{height - 14}" width="14" height="10" fill="{FLAT_COLOUR}"/>',
            f'<text x="{LEFT + 218}" y="{height - 5}">all {lo:.0f} {unit}</text>',
        ]
    parts = []
    for i, colour in enumerate(PALETTE):
        parts.append(
            f'<rect x="{LEFT + 200 + i * 14}" y="{height - 14}" width="14" height="10" fill="{colour}"/>'
        )
    parts.append(f'<text x="{LEFT + 200 - 4}" y="{height - 5}" text-anchor="end">{lo:.0f}</text>')
    parts.append(f'<text x="{LEFT + 204 + len(PALETTE) * 14}" y="{height - 5}">{hi:.0f}</text>')
    return parts


Point = tuple[float, float, str | None]
"""A chart point: (time ms, value, None for a whole tick or what a partial one covers, e.g. '71/72 GPUs')."""
PLOT_TOP, PLOT_H = 18, 90


def timeline(
    axis: Axis,
    points: Sequence[Point],
    title: str,
    unit: str,
    events: Sequence[dict[str, Any]],
    suspects: Sequence[dict[str, Any]] = (),
) -> str:
    """One rack timeline: whole ticks joined by a line, partial ones as hollow marks (never a dip), each
    event a dashed line and each suspect's onset (monitor.report_suspects) a solid labelled one."""
    height = 130
    parts = [f'<svg width="{axis.width}" height="{height}" role="img" aria-label="{esc(title)}">']
    parts.append(f'<text x="{LEFT}" y="12">{esc(title)} ({unit})</text>')
    parts.append(plot_area(axis, PLOT_TOP, PLOT_H))
    parts.append('<g class="marks">')  # events and data points: what must lie inside the plot area
    for e in events:
        x = axis.x(e["ms"])
        colour = EVENT_COLOURS.get(e["kind"], "#999")
        label = esc(f"{iso(e['ms'])} {e['kind']} gpu={e['gpu']} code={e['code']} {e['detail'] or ''}")
        parts.append(
            f'<line x1="{x:.1f}" y1="{PLOT_TOP}" x2="{x:.1f}" y2="{PLOT_TOP + PLOT_H}" stroke="{colour}" '
            f'stroke-dasharray="2,2"><title>{label}</title></line>'
        )
    parts += onset_marks(axis, suspects)
    finite = sorted((p for p in points if p[1] is not None and math.isfinite(p[1])), key=lambda p: p[0])
    if not finite:
        parts.append(f'</g><text x="{LEFT + 10}" y="60">no data in this window</text>')
        return "".join([*parts, axis.ticks(height - 8), "</svg>"])
    lo, hi = min(p[1] for p in finite), max(p[1] for p in finite)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.05 or 1.0

    def y(v: float) -> float:
        return PLOT_TOP + PLOT_H - (v - lo + pad) / (hi - lo + 2 * pad) * PLOT_H

    parts += _whole_lines(axis, finite, y)
    partial = [(t, v, what) for t, v, what in finite if what is not None]
    for t, v, what in partial:
        tip = esc(f"{hhmm(t)} partial: {num(v)} {unit} from {what}")
        parts.append(
            f'<circle cx="{axis.x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="none" stroke="#e80">'
            f"<title>{tip}</title></circle>"
        )
    parts.append("</g>")
    if partial:
        parts.append(
            f'<text x="{axis.width - 10}" y="12" text-anchor="end">o: {len(partial)} partial '
            "(not every source reported; not the whole rack)</text>"
        )
    for v in (hi, lo):
        parts.append(f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{num(v)}</text>')
    return "".join([*parts, axis.ticks(height - 8), "</svg>"])


def onset_marks(axis: Axis, suspects: Sequence[dict[str, Any]]) -> list[str]:
    """Each suspect's onset as a solid line named by a label at its top, inside the plot area: to the
    line's right in the chart's left half, to its left in the right half; rows stagger so labels of
    onsets close together do not sit on one another."""
    out = []
    timed = [s for s in suspects if s.get("onset_ms") is not None]
    for i, sus in enumerate(timed):
        x = axis.x(sus["onset_ms"])
        when = (
            f"at or before {sus['onset']} (the window's start)" if sus.get("onset_at_start") else sus["onset"]
        )
        tip = esc(f"onset of {sus['element']}: {when}")
        right = x > (LEFT + axis.width - 10) / 2
        text_x, anchor = (x - 3, "end") if right else (x + 3, "start")
        y = PLOT_TOP + 12 + 12 * (i % (PLOT_H // 12 - 1))
        out.append(
            f'<line class="onset" x1="{x:.1f}" y1="{PLOT_TOP}" x2="{x:.1f}" y2="{PLOT_TOP + PLOT_H}" '
            f'stroke="{ONSET_COLOUR}" stroke-width="1.5"><title>{tip}</title></line>'
            f'<text class="onset" x="{text_x:.1f}" y="{y}" text-anchor="{anchor}" '
            f'style="fill:{ONSET_COLOUR}">'
            f"{esc(sus['label'])}<title>{tip}</title></text>"
        )
    return out


def _whole_lines(axis: Axis, points: Sequence[Point], y: Callable[[float], float]) -> list[str]:
    """The whole points (in time order) as lines, broken at each hole in the data; a lone one as a dot."""
    runs = _runs([t for t, _, _ in points], axis.step_ms)
    out = []
    for run in sorted(set(runs)):
        whole = [
            (axis.x(t), y(v))
            for (t, v, what), r in zip(points, runs, strict=True)
            if r == run and what is None
        ]
        if len(whole) == 1:  # a polyline of one vertex would draw nothing
            out.append(f'<circle cx="{whole[0][0]:.1f}" cy="{whole[0][1]:.1f}" r="2" fill="#1f5fbf"/>')
        elif whole:
            line = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in whole)
            out.append(f'<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="{line}"/>')
    return out


def _runs(times: Sequence[float], step_ms: int) -> list[int]:
    """Per point (times in order), how many holes in the data lie before it: the line breaks there.
    A hole is over 3x the usual gap (step or median gap): a step left empty by the sampling stays joined."""
    gaps = [b - a for a, b in pairwise(times)]
    usual = max(step_ms, statistics.median(gaps)) if gaps else step_ms
    out, holes = [0] * len(times), 0
    for i, gap in enumerate(gaps, start=1):
        holes += gap > 3 * usual
        out[i] = holes
    return out


def plot_area(axis: Axis, top: float, height: float) -> str:
    """The frame every mark of a chart lies inside (tests/post/test_report_browser.py checks it)."""
    return (
        f'<rect class="plot" x="{LEFT}" y="{top}" width="{axis.width - LEFT - 10}" height="{height}" '
        'fill="none" stroke="#e4e4e4"/>'
    )


def num(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f}k"
    return f"{v:.3g}"
