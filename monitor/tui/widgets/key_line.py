"""The key line at the bottom: every binding of the app, grouped, with the current metric marked."""

from __future__ import annotations

from collections.abc import Collection

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static

HEATMAP_ACTIONS = ("metric(", "toggle_deviation")
"""Actions that change what the heatmap colours: listed first, the active ones in reverse."""


def key_line_text(
    bindings: list[Binding],
    active: str | Collection[str],
    key_display: dict[str, str],
    *,
    width: int = 0,
) -> Text:
    """'u util p power ... d deviation ↑↓←→ move ? help q quit' with the active heatmap keys in reverse.

    When that is wider than `width` (80 columns), the inactive heatmap keys lose their names
    ('u util p t m c n e d ↑↓←→ move ? help ...') so the view keys and help still fit.
    """
    active = {active} if isinstance(active, str) else set(active)
    full = _text(bindings, active, key_display, compact=False)
    if width and full.cell_len > width:
        return _text(bindings, active, key_display, compact=True)
    return full


def _text(bindings: list[Binding], active: set[str], key_display: dict[str, str], *, compact: bool) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    heat = [b for b in bindings if b.action.startswith(HEATMAP_ACTIONS)]
    moves = [b for b in bindings if b.action.startswith("move(")]
    others = [b for b in bindings if b not in heat and b not in moves and b.show]
    for b in heat:
        on = b.action in active
        style = "reverse bold" if on else ""
        text.append(f"{key_display.get(b.key, b.key)}", style="bold " + style)
        text.append(f" {b.description} " if on or not compact else " ", style=style)
    if moves:
        text.append("".join(key_display.get(b.key, b.key) for b in moves), style="bold")
        text.append(" move ")
    for b in others:
        text.append(key_display.get(b.key, b.key), style="bold")
        text.append(f" {b.description} ")
    text.rstrip()
    return text


class KeyLine(Static):
    """One line listing the keys; built from the app's BINDINGS so it never drifts from them."""

    DEFAULT_CSS = "KeyLine { height: 1; }"

    def __init__(self, *, id: str | None = None) -> None:
        """An empty line; show() fills it."""
        super().__init__("", id=id)
        self._shown: str | None = None
        self._last: tuple[list[Binding], str | Collection[str]] | None = None

    def show(self, bindings: list[Binding], active: str | Collection[str]) -> None:
        """List `bindings`, marking those whose action is in `active` (one action or several)."""
        self._last = (bindings, active)
        display = {b.key: self.app.get_key_display(b) for b in bindings}
        room = self.content_size.width
        text = key_line_text(bindings, active, display, width=room)
        if text.markup != self._shown:
            self._shown = text.markup
            self.update(text, layout=False)

    def on_resize(self) -> None:
        """Pick the full or the compact line for the new width."""
        if self._last is not None:
            self.show(*self._last)
