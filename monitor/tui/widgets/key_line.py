"""The key line at the bottom: every binding of the app, grouped, with the current metric marked."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static


def key_line_text(bindings: list[Binding], current_action: str, key_display: dict[str, str]) -> Text:
    """'u util p power ... ↑↓←→ move ? help q quit' with the active metric in reverse (fits 80)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    metric = [b for b in bindings if b.action.startswith("metric(")]
    moves = [b for b in bindings if b.action.startswith("move(")]
    others = [b for b in bindings if b not in metric and b not in moves and b.show]
    for b in metric:
        style = "reverse bold" if b.action == current_action else ""
        text.append(f"{key_display.get(b.key, b.key)}", style="bold " + style)
        text.append(f" {b.description} ", style=style)
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

    def show(self, bindings: list[Binding], current_action: str) -> None:
        """List `bindings`, marking the one whose action is `current_action`."""
        display = {b.key: self.app.get_key_display(b) for b in bindings}
        text = key_line_text(bindings, current_action, display)
        if text.markup != self._shown:
            self._shown = text.markup
            self.update(text, layout=False)
