"""The replay bar: play state, speed, the cursor's time (UTC, ISO 8601) and where it is in the recording."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from monitor.replay import ReplayState, speed_label
from monitor.timespec import iso
from monitor.view.model import clock_text

HINT = "space play  ,. step  [] 10s  {} 1m  j jump to  -+ speed"
"""Replay keys, shown when the bar has room (the help screen always lists them)."""
TRACK_MIN = 8
"""The position track is drawn only when it gets at least this many columns."""


def replay_bar_text(state: ReplayState, width: int) -> Text:
    """One line for `state` fitted to `width` columns, readable without colour.

    Most important first: play state and speed, the cursor's time; then the position track, the
    recording's range, and the key hint, each only if it fits.
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    if state.playing:
        text.append("▶ playing", style="bold")
    else:
        text.append("❚❚ paused", style="bold")
    text.append(f" {speed_label(state.speed):>5}  ")
    text.append(iso(state.cursor_ms), style="bold reverse" if state.loading else "bold")
    if state.error:
        text.append(f"  {state.error}", style="bold red")
        return text
    span = f"{clock_text(state.first_ms)}–{clock_text(state.last_ms)}"
    rest = width - text.cell_len
    hint = len(HINT) + 2
    track = rest - len(span) - 4
    if track - hint >= 3 * TRACK_MIN:
        track -= hint
    else:
        hint = 0
    if track >= TRACK_MIN:
        done = round(state.fraction * (track - 1))
        text.append("  ")
        text.append("━" * done, style="bold")
        text.append("●", style="bold")
        text.append("─" * (track - 1 - done), style="dim")
    if rest >= len(span) + 2:
        text.append(f"  {span}", style="dim")
    if hint:
        text.append(f"  {HINT}", style="dim")
    return text


class ReplayBar(Widget):
    """One line under the rack: the replay cursor and its controls' state; repaints only on change."""

    DEFAULT_CSS = "ReplayBar { height: 1; }"

    def __init__(self, state: ReplayState, *, id: str | None = None) -> None:
        """Show `state` until show() is given a newer one."""
        super().__init__(id=id)
        self.state = state

    def show(self, state: ReplayState) -> None:
        """Show a new replay state."""
        if state != self.state:
            self.state = state
            self.refresh()

    def render(self) -> Text:
        """The bar for the current state and width."""
        return replay_bar_text(self.state, self.size.width)
