"""The alert line under the totals: how many alerts are active and the newest ones; hidden when none."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from monitor.view.alerts_view import ActiveAlert


def alerts_text(alerts: Sequence[ActiveAlert]) -> Text:
    """'! 2 ALERTS  T05.G1 temp_margin: 4 C to slowdown | tray 3 stale: not answering' (no colour needed)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"! {len(alerts)} ALERT{'S' if len(alerts) != 1 else ''} ", style="bold reverse")
    text.append(" " + " | ".join(a.text for a in alerts), style="bold")
    return text


class AlertBar(Static):
    """Active alerts in one line."""

    DEFAULT_CSS = """
    AlertBar { height: 1; background: $error 30%; color: $text; padding: 0 1; display: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """An empty, hidden bar."""
        super().__init__("", id=id)
        self._shown: tuple[ActiveAlert, ...] | None = None

    def show(self, alerts: Sequence[ActiveAlert]) -> None:
        """Show the alerts (newest first); hide the bar when there are none."""
        key = tuple(alerts)
        if key == self._shown:
            return
        self._shown = key
        self.display = bool(alerts)
        if alerts:
            self.update(alerts_text(alerts))
