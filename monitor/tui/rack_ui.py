"""The rack app as its views see it: a Protocol, so that screens, the palette and the problem links type
their app without importing it (monitor.tui.app imports them; they import only this)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from textual.binding import Binding
    from textual.screen import Screen

    from monitor.view.layout import GpuLayout
    from monitor.view.model import RackSnapshot
    from monitor.view.serving import ServingSnapshot
    from storage.head import Head


class RackUi(Protocol):
    """What the rack views read and call of monitor.tui.app.RackApp (a Textual App)."""

    head: Head
    """The frames shown; a collector thread appends to it."""
    layout: GpuLayout
    snapshot: RackSnapshot
    """The newest rack snapshot applied."""
    serving: ServingSnapshot | None
    selected: int
    """The selected GPU (rack index)."""
    store: Path | None
    """The store the head's frames are recorded in, if any."""

    @property
    def key_bindings(self) -> list[Binding]:
        """The app's own bindings."""
        ...

    @property
    def screen(self) -> Screen[Any]:
        """The current screen (Textual's App.screen)."""
        ...

    @property
    def screen_stack(self) -> list[Screen[Any]]:
        """Textual's App.screen_stack."""
        ...

    def redraw(self) -> None:
        """Push the current snapshot, metric and selection to every widget."""
        ...

    def action_view(self, name: str) -> None:
        """Open the view `name` (monitor.tui.screens.registry)."""
        ...

    def action_metric(self, name: str) -> None:
        """Colour the heatmap by metric `name`."""
        ...

    def open_gpu_detail(self, gpu: int) -> None:
        """Select `gpu` and open its detail view."""
        ...

    def highlight(self, name: str, gpus: tuple[int, ...]) -> None:
        """Mark a server's GPUs in the rack."""
        ...

    def push_screen(self, screen: Screen[Any]) -> Any:
        """Textual's App.push_screen."""
        ...

    def pop_screen(self) -> Any:
        """Textual's App.pop_screen."""
        ...

    def call_after_refresh(self, callback: Callable[..., Any], *args: Any) -> bool:
        """Textual's App.call_after_refresh."""
        ...
