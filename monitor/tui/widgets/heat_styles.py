"""The heatmap's colours: the value ramp, deviation mode's diverging colours, and the chrome styles.

The ramp encodes data, not chrome, so it is fixed; the chrome (LOST, stale, labels) comes from CSS so
themes apply (Heatmap reads it from its component classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from rich.style import Style
from textual.color import Color, Gradient

from monitor.view.metrics import BUCKETS, Scale

RAMP_COLORS = ("#2d1b4e", "#3b3f8c", "#2f6f9f", "#21918c", "#35b779", "#90d743", "#fde725")
"""Low to high, viridis-like: few, well-separated stops so the buckets survive 256-colour quantisation.
No red in the ramp: red means LOST or an alarm, so a lost GPU stands out on a busy, hot rack."""

DIVERGING_COLORS = (
    "#1f3a93",
    "#2f63b5",
    "#5a8bd0",
    "#8aa6c8",
    "#3c3c3c",
    "#3c3c3c",
    "#c8b98a",
    "#e8c23a",
    "#f5a623",
    "#ff8c00",
)
"""Deviation mode: blue below the group's median, grey near it, amber to orange above; the two middle
buckets (within 2 %) share one calm grey, so only GPUs that are off draw the eye. No red, as above."""


def _cell_style(bg: Color) -> Style:
    return Style(bgcolor=bg.rich_color, color=bg.get_contrast_text(1.0).rich_color)


def ramp_styles(colors: tuple[str, ...] = RAMP_COLORS, buckets: int = BUCKETS) -> tuple[Style, ...]:
    """One background+contrasting-text style per colour bucket, spread along the ramp."""
    gradient = Gradient(*((i / (len(colors) - 1), Color.parse(c)) for i, c in enumerate(colors)))
    return tuple(_cell_style(gradient.get_color(b / max(1, buckets - 1))) for b in range(buckets))


DIVERGING_STYLES = tuple(_cell_style(Color.parse(c)) for c in DIVERGING_COLORS)


@lru_cache(maxsize=32)
def scale_styles(scale: Scale) -> tuple[Style, ...]:
    """The styles of a scale's buckets: the diverging colours, or the ramp spread over its buckets."""
    if scale.diverging and scale.buckets == len(DIVERGING_STYLES):
        return DIVERGING_STYLES
    return ramp_styles(RAMP_COLORS, scale.buckets)


@dataclass(frozen=True)
class HeatmapStyles:
    """The Rich styles the row builder uses (from the widget's component classes when mounted)."""

    base: Style
    label: Style
    header: Style
    lost: Style
    stale: Style
    error: Style
    no_data: Style
    switch: Style
    alarm: Style
    selected: Style

    @classmethod
    def plain(cls) -> HeatmapStyles:
        """Fixed styles that need no running app (unit tests, screenshots of a widget)."""
        return cls(
            base=Style(),
            label=Style(bold=True),
            header=Style(bold=True),
            lost=Style(color="red", reverse=True, bold=True),
            stale=Style(dim=True),
            error=Style(color="yellow", reverse=True, bold=True),
            no_data=Style(dim=True),
            switch=Style(dim=True),
            alarm=Style(color="red", bold=True),
            selected=Style(bold=True, underline=True),
        )
