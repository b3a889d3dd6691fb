"""FleetApp: the fleet screen first, then any rack in the rack views we have (RackApp's), escape back.

The fleet worker builds every rack's FleetRow off the event loop (monitor.fleet.FleetRack.current_row:
the rack view's builders, problems and alert tracker over the rack's small head; or, for a fleet read
from one query API, monitor.fleet.QueriedRack's row from the fleet's aggregate queries) and posts them.
Opening a rack points the rack views at that rack's full head (mirrored from the moment it opens) and starts
RackApp's snapshot worker on it; going back to the fleet stops that worker. The last rack opened keeps
its mirror (a thinning head, as the one-rack client's) so that coming back to it keeps its history;
opening another rack drops it, so the fleet holds at most one.
"""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.worker import get_current_worker

from monitor.fleet import Fleet, FleetRack, QueriedFleet, QueriedRack
from monitor.tui.app import RackApp
from monitor.tui.messages import SnapshotFailed
from monitor.tui.screens.fleet import FleetScreen
from monitor.view.alerts_view import AlertTracker
from monitor.view.fleet_row import FleetRow
from monitor.view.model import RackSnapshot
from storage.head import Head

FLEET_WAIT_S = 0.25
"""How often the fleet worker looks for racks with new frames (and whether it was cancelled)."""
FLEET_ACTIONS = frozenset({"quit", "command_palette"})
"""The app's own actions that apply on the fleet screen; the rack keys wait until a rack is open."""


class FleetApp(RackApp):
    """The fleet screen over several racks; each rack opens in RackApp's views."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape", "fleet", "fleet", tooltip="Back to the fleet (clears a highlight first)", id="fleet"
        ),
    ]
    """Escape goes back to the fleet (RackApp's own escape only cleared a highlight)."""

    class RowsReady(Message, bubble=False):
        """New fleet rows were built off the event loop; only the newest queued one matters."""

        def __init__(self, rows: tuple[FleetRow, ...]) -> None:
            """Carry every rack's row."""
            super().__init__()
            self.rows = rows

        def can_replace(self, message: Message) -> bool:
            """A newer set of rows supersedes an older one (each row is the rack's newest)."""
            return isinstance(message, FleetApp.RowsReady)

    def __init__(self, fleet: Fleet | QueriedFleet, *, fleet_name: str = "fleet", **options: object) -> None:
        """Show `fleet`; `options` are RackApp's (interval, title, subtitle, keymap, bell)."""
        super().__init__(Head(capacity=2), **options)  # type: ignore[arg-type]
        self.fleet = fleet
        self.fleet_name = fleet_name
        self.rack_subtitle = self.sub_title
        self.open_rack_name: str | None = None
        self.rows_applied = 0
        """Row sets applied so far (tests and the benchmark await this)."""
        self.fleet_screen = FleetScreen(fleet_name, {r.name: len(r.builder.layout.gpus) for r in fleet.racks})

    @property
    def key_bindings(self) -> list[Binding]:
        """RackApp's keys with escape going back to the fleet."""
        base = [b for b in RackApp.BINDINGS if isinstance(b, Binding) and b.key != "escape"]
        return [*base, *(b for b in self.BINDINGS if isinstance(b, Binding))]

    def on_mount(self) -> None:
        """The rack views stay underneath; the fleet screen goes on top and its worker starts."""
        super().on_mount()
        self.workers.cancel_group(self, "snapshot")  # no rack open yet
        self.install_screen(self.fleet_screen, name="fleet")
        self.push_screen("fleet")
        self._follow_fleet()

    @property
    def fleet_visible(self) -> bool:
        """Whether the fleet screen is the current screen."""
        return self.screen is self.fleet_screen

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """On the fleet screen only quitting and the palette apply (the rack keys need an open rack)."""
        return not (self.fleet_visible and action not in FLEET_ACTIONS)

    # -- data ------------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, exclusive=True, group="fleet", name="follow-fleet")
    def _follow_fleet(self) -> None:
        """Rebuild the row of every rack with a new frame, off the event loop, until cancelled."""
        worker = get_current_worker()
        racks = self.fleet.racks
        seen = [-1] * len(racks)
        while not worker.cancelled_event.wait(FLEET_WAIT_S):
            versions = [r.head.version for r in racks]
            if versions == seen:
                continue
            seen = versions
            rows = tuple(self._row(rack) for rack in racks)
            self.post_message(self.RowsReady(rows))

    def _row(self, rack: FleetRack | QueriedRack) -> FleetRow:
        try:
            return rack.current_row()
        except Exception as err:  # one bad frame must not stop the fleet's updates
            self.post_message(SnapshotFailed(f"{rack.name}: {type(err).__name__}: {err}"))
            return rack.row or FleetRow.waiting(rack.name, len(rack.builder.layout.gpus))

    def on_fleet_app_rows_ready(self, message: RowsReady) -> None:
        """Show the newest rows; while a rack is open the fleet screen only keeps them (it is hidden)."""
        if not self.screen_stack:  # the app is closing: rows posted just before it stopped
            return
        if self.fleet_visible:
            self.fleet_screen.show(message.rows)
        else:
            self.fleet_screen.keep(message.rows)
        self.rows_applied += 1

    # -- moving between the fleet and a rack -------------------------------------------------

    def on_fleet_screen_rack_chosen(self, message: FleetScreen.RackChosen) -> None:
        """Open the chosen rack in the rack views."""
        self.open_rack(message.name)

    def open_rack(self, name: str) -> None:
        """Show rack `name` in the rack view: its full head, its name, its alerts; the fleet screen goes."""
        rack = self.fleet.rack(name)
        if self.open_rack_name != name:
            if self.open_rack_name is not None:
                self.fleet.rack(self.open_rack_name).head.close_mirror()
            self.open_rack_name = name
            self.head = rack.head.open_mirror()
            self.snapshot = RackSnapshot.empty(self.layout)
            self.serving = None
            self.alerts = AlertTracker()
            self.bell_on_alert = rack.config.alerts.bell
            self.highlight_name = ""
        self.title = name
        self.sub_title = f"{self.fleet_name} · {self.rack_subtitle}".strip(" ·")
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.redraw()
        self._follow_head()

    def action_fleet(self) -> None:
        """Clear the instance highlight if there is one; else back to the fleet (the rack's worker stops)."""
        if self.highlight_name:
            self.action_clear_highlight()
            return
        self.workers.cancel_group(self, "snapshot")
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen("fleet")
