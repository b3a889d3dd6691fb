"""The event log: XIDs, clock-event changes, link down/up and lost GPUs, newest first, bounded."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from monitor.tui.widgets.diff_paint import LinePanel
from monitor.view.model import EventView


def events_text(events: Sequence[EventView], limit: int) -> Text:
    """Up to `limit` events, newest first, one per line; severe ones marked '!' (and red)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not events:
        text.append("no events", style="dim")
        return text
    for n, event in enumerate(events[:limit]):
        if n:
            text.append("\n")
        mark = "!" if event.severe else " "
        text.append(f"{mark}{event.text}", style="bold red" if event.severe else "")
    return text


class EventLog(LinePanel):
    """The newest events, newest at the top."""

    DEFAULT_CSS = "EventLog { height: 1fr; overflow: hidden; }"

    MAX_EVENTS = 200
    """The most lines ever drawn, whatever the height."""

    def __init__(self, *, id: str | None = None) -> None:
        """An empty log; show() fills it."""
        super().__init__("", id=id)
        self._shown: tuple[EventView, ...] | None = None

    def show(self, events: Sequence[EventView]) -> None:
        """Show the events; nothing repaints unless the list changed."""
        key = tuple(events[: self.MAX_EVENTS])
        if key == self._shown:
            return
        self._shown = key
        self.show_text(events_text(key, self.MAX_EVENTS))
