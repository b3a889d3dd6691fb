"""A throughput gauge: the value against its ceiling as a bar, with a sparkline of recent history."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget

from monitor.tui.widgets.diff_paint import LinePanel
from monitor.tui.widgets.history_chart import BLOCKS, bar_rows

BAR_WIDTH = 20
SPARK_HEIGHT = 2
SPAN_FLOOR = 0.2
"""A sparkline spans at least this share of its peak, so noise on a steady value draws a flat line.

Stretching min..max to the full height (as Textual's Sparkline does) turns 0.5 % of noise into a
sawtooth that reads as a swing, and repaints every column every tick."""


def gauge_text(label: str, value: float | None, ceiling: float | None, unit: str) -> Text:
    """'Power   84.2 / 100.8 kW [########------------]  84%' (the bar reads without colour)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{label:<7}", style="bold")
    if value is None:
        text.append(f"  -- {unit}", style="dim")
        return text
    text.append(f"{value:6.1f}")
    if ceiling:
        text.append(f" / {ceiling:.1f}")
    text.append(f" {unit} ")
    if ceiling:
        share = max(0.0, min(1.0, value / ceiling))
        filled = round(share * BAR_WIDTH)
        text.append("[")
        text.append("#" * filled, style="bold")
        text.append("-" * (BAR_WIDTH - filled), style="dim")
        text.append(f"] {share * 100:3.0f}%")
    return text


def spark_rows(history: Sequence[float], width: int, height: int = SPARK_HEIGHT) -> list[str]:
    """The newest `width` values, one per column and right-aligned, as rows of blocks (top row first).

    The scale spans the window's range, but at least SPAN_FLOOR of its peak. A narrower range sits at
    three quarters of the height, mid-row (so noise does not flip a row boundary), with room to show
    a drop. The lowest value keeps the lowest block: a column is blank only where there is no history.
    """
    values = list(history)[-width:] if width > 0 else []
    if not values:
        return [" " * max(0, width)] * height
    low, high = min(values), max(values)
    span = max(high - low, SPAN_FLOOR * abs(high))
    if span <= 0:
        return [" " * width] * height
    steps = height * (len(BLOCKS) - 1)
    top = high if high - low >= span else (low + high) / 2 + span / 4
    bottom = top - span * steps / (steps - 1)
    return [row.rjust(width) for row in bar_rows(values, height, top, bottom)]


class SparkBars(LinePanel):
    """A block-character sparkline in one colour: it costs a few bytes a column, not a style each."""

    DEFAULT_CSS = f"SparkBars {{ height: {SPARK_HEIGHT}; color: $primary; }}"

    def __init__(self, *, id: str | None = None) -> None:
        """An empty sparkline."""
        super().__init__("", id=id)
        self._history: tuple[float, ...] = ()

    def show(self, history: Sequence[float]) -> None:
        """Draw `history` (oldest first) at the current width."""
        self._history = tuple(history)
        self.show_text(Text("\n".join(spark_rows(self._history, self.size.width)), no_wrap=True))

    def on_resize(self) -> None:
        """As many values as there are columns."""
        self.show(self._history)


class Gauge(Widget):
    """A labelled gauge line over a sparkline."""

    DEFAULT_CSS = """
    Gauge { height: auto; }
    Gauge > .gauge--line { height: 1; }
    """

    def __init__(self, label: str, unit: str, *, id: str | None = None) -> None:
        """A gauge for `label` measured in `unit`."""
        super().__init__(id=id)
        self.label = label
        self.unit = unit

    def compose(self) -> ComposeResult:
        """The gauge line and its sparkline."""
        yield LinePanel(classes="gauge--line")
        yield SparkBars()

    def show(self, value: float | None, ceiling: float | None, history: Sequence[float]) -> None:
        """Show the newest value and its history; only the characters that changed repaint."""
        self.query_one(".gauge--line", LinePanel).show_text(gauge_text(self.label, value, ceiling, self.unit))
        self.query_one(SparkBars).show(history)
