"""The help screen: every key of the app, listed from its bindings."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


def bindings_table(bindings: list[Binding], key_display: dict[str, str]) -> Table:
    """A two-column table: key, what it does (its tooltip when it has one)."""
    table = Table(show_header=True, box=None, padding=(0, 2, 0, 0))
    table.add_column("Key", style="bold", no_wrap=True)
    table.add_column("Does")
    for b in bindings:
        table.add_row(key_display.get(b.key, b.key), b.tooltip or b.description)
    return table


class HelpScreen(ModalScreen[None]):
    """A modal listing the keys; any of escape, ? or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close help"),
        Binding("question_mark", "close", "Close help", show=False),
        Binding("q", "close", "Close help", show=False),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 64; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, bindings: list[Binding]) -> None:
        """Show `bindings` (the app passes its own, so the list never drifts from the keys)."""
        super().__init__()
        self.bindings = bindings

    def compose(self) -> ComposeResult:
        """The table of keys inside a bordered box."""
        display = {b.key: self.app.get_key_display(b) for b in self.bindings}
        with Vertical() as box:
            box.border_title = "Keys"
            box.border_subtitle = "esc closes"
            yield Static(bindings_table(self.bindings, display), classes="help--keys")

    def action_close(self) -> None:
        """Back to the rack."""
        self.dismiss(None)
