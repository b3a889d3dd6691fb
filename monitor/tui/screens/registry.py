"""The views by name, and how the app opens one (replacing any view already open over the rack)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.tui.screens.base import LiveScreen
from monitor.tui.screens.events import EventsScreen
from monitor.tui.screens.gpu_detail import GpuDetailScreen
from monitor.tui.screens.nvlink import NvlinkScreen
from monitor.tui.screens.serving import ServingScreen
from monitor.tui.screens.skew import SkewScreen

if TYPE_CHECKING:
    from monitor.tui.rack_ui import RackUi

SCREENS: dict[str, type[LiveScreen]] = {
    "nvlink": NvlinkScreen,
    "serving": ServingScreen,
    "detail": GpuDetailScreen,
    "events": EventsScreen,
    "skew": SkewScreen,
}
"""Every view over the rack view, by the name RackApp.action_view takes."""


def make_screen(app: RackUi, name: str) -> LiveScreen:
    """A new screen for view `name`."""
    if name == "detail":
        return GpuDetailScreen(app.selected, app.store)
    if name == "events":
        return EventsScreen(app.store)
    return SCREENS[name]()


def open_view(app: RackUi, name: str) -> None:
    """Show view `name` with only the rack view under it; 'rack' closes every view."""
    while len(app.screen_stack) > 1:
        app.pop_screen()
    if name != "rack":
        app.push_screen(make_screen(app, name))
