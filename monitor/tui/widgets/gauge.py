"""A throughput gauge: the value against its ceiling as a bar, with a sparkline of recent history."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Sparkline, Static

BAR_WIDTH = 20


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


class Gauge(Widget):
    """A labelled gauge line over a sparkline."""

    DEFAULT_CSS = """
    Gauge { height: auto; }
    Gauge > Static { height: 1; }
    Gauge > Sparkline { height: 2; }
    """

    def __init__(self, label: str, unit: str, *, id: str | None = None) -> None:
        """A gauge for `label` measured in `unit`."""
        super().__init__(id=id)
        self.label = label
        self.unit = unit
        self._shown: tuple[str, tuple[float, ...]] | None = None

    def compose(self) -> ComposeResult:
        """The gauge line and its sparkline."""
        yield Static("", classes="gauge--line")
        yield Sparkline([], summary_function=max)

    def show(self, value: float | None, ceiling: float | None, history: Sequence[float]) -> None:
        """Show the newest value and its history; nothing repaints when neither changed."""
        text = gauge_text(self.label, value, ceiling, self.unit)
        key = (text.plain, tuple(history))
        if key == self._shown:
            return
        self._shown = key
        self.query_one(Static).update(text, layout=False)
        # Sparkline watches its data reactive: assign a new list, never mutate.
        self.query_one(Sparkline).data = list(history)
