"""A small history chart: a title line, block-character bars, and a row marking events under the bars.

A Line API widget: the rows are built once per new series (pure functions below) and cached as strips.
Event marks are letters, so they read without colour: X XID, D link down, U link up, L GPU lost,
R GPU recovered, A alert, a alert cleared, c clock-event change, E endpoint down/up, l collector late.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from monitor.view.model import EventView
from storage.schemas import EventKind

BLOCKS = " ▁▂▃▄▅▆▇█"
EVENT_MARKS: dict[str, str] = {
    EventKind.XID: "X",
    EventKind.LINK_DOWN: "D",
    EventKind.LINK_UP: "U",
    EventKind.GPU_LOST: "L",
    EventKind.GPU_RECOVERED: "R",
    EventKind.ALERT: "A",
    EventKind.ALERT_CLEARED: "a",
    EventKind.CLOCKS_EVENT: "c",
    EventKind.ENDPOINT_DOWN: "E",
    EventKind.ENDPOINT_UP: "E",
    EventKind.COLLECTOR_LATE: "l",
    EventKind.RECORDING_STOPPED: "S",
    EventKind.RECORDING_RESUMED: "s",
}
"""The letter each event kind is marked with under the chart."""
MARK_RANK = "XLDSAERUcals"
"""When several events share a column, the first of these wins (the most severe)."""


def resample(
    points: Sequence[tuple[int, float | None]], since: int, until: int, width: int
) -> list[float | None]:
    """Values into `width` columns spanning [since, until]: the mean of each column's known values."""
    sums = [0.0] * width
    counts = [0] * width
    span = max(1, until - since)
    for ts, v in points:
        if v is None or math.isnan(v) or ts < since or ts > until:
            continue
        col = min(width - 1, (ts - since) * width // span)
        sums[col] += v
        counts[col] += 1
    return [sums[i] / counts[i] if counts[i] else None for i in range(width)]


def bar_rows(values: Sequence[float | None], height: int, top: float, bottom: float = 0.0) -> list[str]:
    """Rows of block characters scaled from `bottom` to `top`, top row first.

    A column with no value is blank in every row.
    """
    rows = []
    steps = height * (len(BLOCKS) - 1)
    span = top - bottom
    levels = [
        None if v is None else round(max(0.0, min(1.0, (v - bottom) / span)) * steps) if span > 0 else 0
        for v in values
    ]
    for r in range(height):
        base = (height - 1 - r) * (len(BLOCKS) - 1)
        line = []
        for level in levels:
            if level is None:
                line.append(" ")
            else:
                line.append(BLOCKS[max(0, min(len(BLOCKS) - 1, level - base))])
        rows.append("".join(line))
    return rows


def mark_row(events: Sequence[EventView], since: int, until: int, width: int) -> str:
    """One character per column: the most severe event's letter, '·' where there is none."""
    marks = ["·"] * width
    span = max(1, until - since)
    for ev in events:
        letter = EVENT_MARKS.get(ev.kind)
        if letter is None or ev.ts_ms < since or ev.ts_ms > until:
            continue
        col = min(width - 1, (ev.ts_ms - since) * width // span)
        if marks[col] == "·" or MARK_RANK.index(letter) < MARK_RANK.index(marks[col]):
            marks[col] = letter
    return "".join(marks)


def title_text(label: str, unit: str, values: Sequence[float | None], width: int = 1_000) -> str:
    """'Power (W)  now 812  min 700  max 905' (-- where unknown), in fewer characters where `width` is
    short: single spaces, then 'Power (W) 812 (700..905)' (now, then min..max)."""
    known = [v for v in values if v is not None]
    now = values[-1] if values else None  # a GPU that stopped reporting reads '--', not its last value

    def f(v: float | None) -> str:
        return "--" if v is None else (f"{v:.1f}" if abs(v) < 10 else f"{v:.0f}")

    lo = min(known) if known else None
    hi = max(known) if known else None
    head = f"{label} ({unit})"
    for title in (
        f"{head}  now {f(now)}  min {f(lo)}  max {f(hi)}",
        f"{head} now {f(now)} min {f(lo)} max {f(hi)}",
    ):
        if len(title) <= width:
            return title
    return f"{head} {f(now)} ({f(lo)}..{f(hi)})"


class HistoryChart(Widget):
    """One series over a window with its events marked underneath."""

    DEFAULT_CSS = "HistoryChart { height: 5; }"

    BAR_ROWS = 3
    """Bar rows at the default height; a taller chart (a big terminal) has its height less 2."""

    def __init__(self, label: str, unit: str, ceiling: float | None = None, *, id: str | None = None) -> None:
        """A chart of `label` in `unit`; bars scale to `ceiling` (or the series' maximum when None)."""
        super().__init__(id=id)
        self.label = label
        self.unit = unit
        self.ceiling = ceiling
        self._data: tuple[tuple[tuple[int, float | None], ...], tuple[EventView, ...], int, int] = (
            (),
            (),
            0,
            1,
        )
        self._rows: list[tuple[str, Style]] = []
        self._built_for: tuple[object, ...] | None = None

    def set_series(
        self, points: Sequence[tuple[int, float | None]], events: Sequence[EventView], since: int, until: int
    ) -> None:
        """Chart `points` over [since, until] with `events` marked; repaints only when something changed."""
        data = (tuple(points), tuple(events), since, until)
        if data != self._data:
            self._data = data
            self._built_for = None
            self.refresh()

    def rows(self, width: int) -> list[tuple[str, Style]]:
        """The chart's lines at `width` (pure given the data; cached per width)."""
        key = (width, self.size.height, self._data)
        if self._built_for == key:
            return self._rows
        points, events, since, until = self._data
        values = [v for _, v in points]
        cols = resample(points, since, until, max(1, width))
        known = [v for v in cols if v is not None]
        top = self.ceiling or (max(known) if known else 1.0)
        rows = [(title_text(self.label, self.unit, values, width), Style(bold=True))]
        bars = max(self.BAR_ROWS, self.size.height - 2)  # the title above, the marks below
        rows += [(r, Style()) for r in bar_rows(cols, bars, top)]
        rows.append((mark_row(events, since, until, max(1, width)), Style(dim=True)))
        self._rows, self._built_for = rows, key
        return rows

    def render_line(self, y: int) -> Strip:
        """Line y of the chart."""
        width = self.size.width
        rows = self.rows(width)
        if y >= len(rows):
            return Strip.blank(width, self.rich_style)
        text, style = rows[y]
        return Strip([Segment(text, self.rich_style + style)]).crop_extend(0, width, self.rich_style)
