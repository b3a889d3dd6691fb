"""The totals bar: title, GPUs ok of 72, rack power, NVLink throughput, tokens/s, the data's time.

A total that does not cover the whole rack says what it covers: 'Power 81.2 kW (71/72 GPUs)'.
"""

from __future__ import annotations

from rich.text import Text

from monitor.tui.widgets.diff_paint import LinePanel
from monitor.view.model import RackSnapshot, clock_text
from storage.rack_total import RackTotal

COMPACT_WIDTH = 100
"""Below this width the title gives its room to the figures, and the data's time moves to the front."""


def totals_text(snapshot: RackSnapshot, title: str, subtitle: str = "", *, compact: bool = False) -> Text:
    """The one-line totals bar, readable without colour ('!' marks a rack that is not all ok)."""
    t = snapshot.totals
    text = Text(no_wrap=True, overflow="ellipsis")
    if compact and snapshot.ts_ms is not None:
        # The only clock on a narrow screen (the heatmap there has no border to carry one): first, so
        # the line's end, not the time, is what an 80-column screen cuts.
        text.append(f"{clock_text(snapshot.ts_ms)} ", style="dim")
    if not compact:
        text.append(title, style="bold")
        if subtitle:
            text.append(f" ({subtitle})", style="dim")
        text.append("  ")
    healthy = t.gpus_ok == t.gpus_total
    text.append(f"GPUs ok {t.gpus_ok}/{t.gpus_total}", style="bold" if healthy else "bold red")
    problems = [
        f"{n} {what}"
        for n, what in ((t.gpus_lost, "lost"), (t.gpus_stale, "stale"), (t.gpus_error, "err"))
        if n
    ]
    if problems:
        text.append(f" ({', '.join(problems)})", style="bold red")
    text.append("  Power ")
    text.append(f"{t.power_kw:.1f} kW" if t.power_kw is not None else "-- kW", style="bold")
    _coverage(text, t.power, "GPUs")
    text.append("  NVLink ")
    text.append(t.nvlink_text, style="bold")
    if t.tokens_per_s is not None:
        text.append("  Tokens ")
        text.append(f"{t.tokens_per_s / 1000:,.1f} k/s", style="bold")
        _coverage(text, t.tokens, "endpoints")
    if snapshot.ts_ms is None:
        text.append("  waiting for data", style="dim")
    elif not compact:
        text.append(f"  data at {clock_text(snapshot.ts_ms)}", style="dim")
    return text


def _coverage(text: Text, total: RackTotal, what: str) -> None:
    """' (71/72 GPUs)' after a total that does not cover the whole rack (storage.rack_total's rule)."""
    if total.value is not None and not total.whole:
        text.append(f" ({total.coverage(what)})", style="bold yellow")


class TotalsBar(LinePanel):
    """One line of rack totals across the top of the screen."""

    DEFAULT_CSS = "TotalsBar { height: 1; }"

    def __init__(self, *, id: str | None = None) -> None:
        """An empty bar; show() fills it."""
        super().__init__("", id=id)
        self._last: tuple[RackSnapshot, str, str] | None = None

    def show(self, snapshot: RackSnapshot, title: str, subtitle: str = "") -> None:
        """Show a snapshot's totals; only the characters that changed are repainted."""
        compact = 0 < self.size.width < COMPACT_WIDTH
        self._last = (snapshot, title, subtitle)
        self.show_text(totals_text(snapshot, title, subtitle, compact=compact))

    def on_resize(self) -> None:
        """Switch between the compact and the full line when the width crosses COMPACT_WIDTH."""
        if self._last is not None:
            self.show(*self._last)
