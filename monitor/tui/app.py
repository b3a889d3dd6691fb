"""RackApp: the live rack view over a Head (and, later, a replay cursor); see DESIGN.md, TUI."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from monitor.tui.commands import RackCommands
from monitor.tui.follow import follow_head
from monitor.tui.help_screen import HelpScreen
from monitor.tui.messages import FrameReady, SnapshotFailed
from monitor.tui.problem_views import open_problem, select_problem
from monitor.tui.screens.base import LiveScreen
from monitor.tui.widgets.alert_bar import AlertBar
from monitor.tui.widgets.event_log import EventLog
from monitor.tui.widgets.gauge import Gauge
from monitor.tui.widgets.gpu_detail import GpuDetail
from monitor.tui.widgets.heatmap import Heatmap
from monitor.tui.widgets.key_line import KeyLine
from monitor.tui.widgets.problems_panel import ProblemsPanel
from monitor.tui.widgets.rack_heatmap import RackHeatmap
from monitor.tui.widgets.serving_panel import ServingPanel, ServingReady
from monitor.tui.widgets.totals import TotalsBar
from monitor.view.alerts_view import AlertTracker
from monitor.view.layout import RACK, GpuLayout
from monitor.view.metrics import METRICS, METRICS_BY_NAME, Metric
from monitor.view.model import RackSnapshot
from monitor.view.problems import rack_problems
from monitor.view.serving import ServingSnapshot
from storage.head import Head


def _metric_binding(metric: Metric) -> Binding:
    return Binding(
        metric.key,
        f"metric('{metric.name}')",
        metric.name,
        tooltip=f"Show {metric.label} ({metric.unit}) in the heatmap",
        id=f"metric-{metric.name}",
    )


CRAMPED_HEIGHT = 26
"""Below this many rows the heatmap drops its border (class -cramped): at 80x24 every row counts."""


class RackScreen(Screen[None]):
    """The rack view's screen; it redraws from the newest snapshot whenever it becomes current again."""

    def on_resize(self) -> None:
        """Mark a screen too short for the heatmap's border."""
        self.set_class(self.size.height < CRAMPED_HEIGHT, "-cramped")

    def on_screen_resume(self) -> None:
        """Catch up with the snapshots that arrived while another view was on top."""
        app = self.app
        if isinstance(app, RackApp):
            app.redraw()


class RackApp(App[None]):
    """The rack view: heatmap, totals, gauges, GPU detail and events, refreshed as frames arrive."""

    # Absolute, so subclasses defined elsewhere (tests, replay) find the same stylesheet.
    CSS_PATH = Path(__file__).with_name("app.tcss")
    ENABLE_COMMAND_PALETTE = True
    COMMANDS: ClassVar[set] = {RackCommands}  # type: ignore[type-arg]

    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-narrow"),
        (120, "-wide"),
        (180, "-xwide"),
    ]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (36, "-tall")]

    BINDINGS: ClassVar[list[BindingType]] = [
        *(_metric_binding(m) for m in METRICS),
        Binding(
            "d",
            "toggle_deviation",
            "deviation",
            tooltip="Colour by % off the group median (model or rack)",
            id="deviation",
        ),
        Binding("up", "move(0, -1)", "up", tooltip="Select the GPU in the tray above", id="up"),
        Binding("down", "move(0, 1)", "down", tooltip="Select the GPU in the tray below", id="down"),
        Binding("left", "move(-1, 0)", "left", tooltip="Select the GPU to the left", id="left"),
        Binding("right", "move(1, 0)", "right", tooltip="Select the GPU to the right", id="right"),
        Binding("question_mark", "help", "help", tooltip="Show this list of keys", id="help"),
        Binding("x", "next_problem", "next", tooltip="Step through the problems", id="problem-next"),
        Binding("o", "open_problem", "open", tooltip="Open the problem's view", id="problem-open"),
        Binding(
            "l", "view('nvlink')", "links", tooltip="NVLink matrix: 72 GPUs x 18 links", id="nvlink-view"
        ),
        Binding("s", "view('serving')", "serving", tooltip="Serving instances, sortable", id="serving-view"),
        Binding(
            "enter",
            "view('detail')",
            "detail",
            tooltip="The selected GPU's detail and history",
            id="detail-view",
        ),
        Binding("v", "view('events')", "events", tooltip="Events timeline", id="events-view"),
        Binding("g", "view('skew')", "skew", tooltip="Group skew and stragglers", id="skew-view"),
        Binding("colon", "command_palette", "palette", tooltip="Command palette (also ctrl+p)", id="palette"),
        Binding(
            "escape",
            "clear_highlight",
            "clear",
            tooltip="Clear the highlighted instance",
            id="clear",
            show=False,
        ),
        Binding("q", "quit", "quit", tooltip="Quit rack-monitor", id="quit"),
    ]
    """Every key; the key line and the help screen are built from this list."""

    def __init__(
        self,
        head: Head,
        *,
        interval: float = 1.0,
        title: str = "rack-monitor",
        subtitle: str = "",
        store: Path | None = None,
        keymap: Mapping[str, str] | None = None,
        bell: bool = False,
        layout: GpuLayout = RACK,
    ) -> None:
        """Show the rack held in `head`.

        Args:
            head: the frames to show; a collector thread appends to it.
            interval: the shortest time between two redraws, in seconds (0: redraw on every frame).
            title: shown first on the totals bar.
            subtitle: shown after the title (e.g. 'sim seed 1').
            store: the store directory the head's frames are recorded in (1 h / 24 h history), if any.
            keymap: binding id -> key(s), from the rack config's [keys] (see binding_ids()).
            bell: ring the terminal bell when an alert fires.
            layout: the GPUs that exist: the whole rack, or in local mode this host's (monitor.view.layout).
        """
        super().__init__()
        self.head = head
        self.interval = max(0.0, interval)
        self.title = title
        self.sub_title = subtitle
        self.layout = layout
        self.snapshot = RackSnapshot.empty(layout)
        self.serving: ServingSnapshot | None = None
        self.metric: Metric = METRICS[0]
        self.deviation = False
        """Colour the heatmap by each GPU's distance from its group's median (the d key)."""
        self.selected = layout.gpus[0] if layout.gpus else 0
        self.frames_applied = 0
        """Snapshots applied so far (tests and the benchmark await this)."""
        self._last_error: str | None = None
        self.follow_stopped = threading.Event()
        """Set when the worker that follows the head has returned (it runs on a pooled thread)."""
        self.store = store
        self.bell_on_alert = bell
        self.alerts = AlertTracker()
        self.highlight_name = ""
        unknown = sorted(set(keymap or {}) - self.binding_ids())
        if unknown:
            raise ValueError(f"unknown key action(s): {', '.join(unknown)}")
        self._keymap_config = dict(keymap or {})

    @classmethod
    def binding_ids(cls) -> set[str]:
        """Every binding id a [keys] table may remap: the app's and each view's."""
        from monitor.tui.screens.registry import SCREENS

        bindings = [*cls.BINDINGS, *(b for screen in SCREENS.values() for b in screen.BINDINGS)]
        return {b.id for b in bindings if isinstance(b, Binding) and b.id}

    @property
    def key_bindings(self) -> list[Binding]:
        """The app's bindings as Binding objects, in declaration order."""
        return [b for b in self.BINDINGS if isinstance(b, Binding)]

    def compose(self) -> ComposeResult:
        """Totals on top, the rack on the left, gauges / detail / events on the right, keys below."""
        yield TotalsBar(id="totals")
        yield AlertBar(id="alerts")
        with Horizontal(id="body"):
            yield RackHeatmap(id="heatmap")
            with Vertical(id="side"):
                with Horizontal(id="gauges"):
                    yield Gauge("Power", "kW", id="power-gauge")
                    yield Gauge("NVLink", "TB/s", id="nvlink-gauge")
                yield ProblemsPanel(id="problems")
                yield ServingPanel(id="serving")
                yield GpuDetail(id="detail")
                yield EventLog(id="events")
        yield KeyLine(id="keys")

    def on_mount(self) -> None:
        """Draw the empty rack and start following the head."""
        self.query_one("#detail").border_title = "GPU"
        self.query_one("#problems").border_title = "Problems"
        self.query_one("#serving").border_title = "Serving (tokens/s over 10 s)"
        self.query_one("#events").border_title = "Events (UTC), newest first"
        if self._keymap_config:
            self.set_keymap(self._keymap_config)
        self.redraw()
        self._follow_head()

    # -- data ------------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, exclusive=True, group="snapshot", name="follow-head")
    def _follow_head(self) -> None:
        """Build snapshots off the event loop as frames arrive (monitor.tui.follow); stops when cancelled."""
        self.follow_stopped.clear()
        try:
            follow_head(
                self.head,
                get_current_worker(),
                self.post_message,
                layout=self.layout,
                interval=self.interval,
            )
        finally:
            self.follow_stopped.set()

    def on_frame_ready(self, message: FrameReady) -> None:
        """Show the newest snapshot."""
        self.snapshot = message.snapshot
        self._follow_alerts()
        self.redraw()
        self.frames_applied += 1
        if isinstance(self.screen, LiveScreen):
            self.screen.rack_updated(message.snapshot)

    def _follow_alerts(self) -> None:
        """Apply the alert events of frames not seen yet; ring the bell for new alerts when asked to."""
        newest = self.head.latest(1)
        if newest and self.alerts.seen_ms is not None and newest[0].ts_ms < self.alerts.seen_ms:
            self.alerts.reset()  # the head went back in time (a replay seek)
        fired = self.alerts.update(self.head.frames(since_ms=self.alerts.seen_ms))
        if fired and self.bell_on_alert:
            self.bell()

    def on_serving_ready(self, message: ServingReady) -> None:
        """Keep the newest serving figures: the FrameReady posted right after them redraws the panel."""
        # Not shown here too: redraw() shows them a moment later, and the panel's second paint of the
        # same figures cost a tenth of the client's redraw time (py-spy, issue 18).
        self.serving = message.serving

    def on_snapshot_failed(self, message: SnapshotFailed) -> None:
        """Tell the operator once per distinct error."""
        if message.error != self._last_error:
            self._last_error = message.error
            self.notify(message.error, title="Cannot read frame", severity="error")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that died is reported, not silently lost."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.notify(str(event.worker.error), title="Live updates stopped", severity="error")

    @property
    def rack_visible(self) -> bool:
        """Whether the rack view is the current screen (no view or dialog over it)."""
        return self.screen is self.screen_stack[0]

    def get_default_screen(self) -> Screen[None]:
        """The rack view's screen."""
        return RackScreen(id="_default")

    def redraw(self) -> None:
        """Push the current snapshot, metric and selection to every widget in one screen update.

        Only while the rack view is the current screen: under another view its widgets are hidden,
        and Textual would repaint every region they dirty through the view on top (a full screen a
        tick). RackScreen redraws when the rack view comes back.
        """
        if not self.rack_visible:
            return
        snap = self.snapshot
        totals = snap.totals
        with self.batch_update():
            self.query_one(TotalsBar).show(snap, self.title, self.sub_title)
            self.query_one(AlertBar).show(self.alerts.newest_first())
            self.query_one(ProblemsPanel).show(rack_problems(snap, self.serving, self.alerts.newest_first()))
            heatmap = self.query_one(Heatmap)
            heatmap.update_view(
                snap, self.metric, self.selected, deviation=self.deviation, serving=self.serving
            )
            title = f"{self.metric.label} ({self.metric.unit})"
            if self.deviation:
                title = f"{self.metric.label}: % off the group median"
            if self.highlight_name:
                title += f" * {self.highlight_name}"
            # The data's time is on the totals bar at every width: one clock, not two repainted a second.
            heatmap.set_border_text(title=title)
            self.query_one("#power-gauge", Gauge).show(
                totals.power_kw, totals.power_limit_kw, snap.power_history_kw
            )
            self.query_one("#nvlink-gauge", Gauge).show(
                totals.nvlink_tbps, snap.layout.nvlink_max_tbps(), snap.nvlink_history_tbps
            )
            self.query_one(GpuDetail).show(snap.gpu(self.selected))
            if self.serving is not None:
                self.query_one(ServingPanel).show(self.serving)
            self.query_one(EventLog).show(snap.events)
            active = {f"metric('{self.metric.name}')"} | ({"toggle_deviation"} if self.deviation else set())
            self.query_one(KeyLine).show(self.key_bindings, active)

    # -- keys ------------------------------------------------------------------------------

    def action_metric(self, name: str) -> None:
        """Colour the heatmap by metric `name`."""
        self.metric = METRICS_BY_NAME[name]
        self.redraw()

    def action_toggle_deviation(self) -> None:
        """Switch the heatmap between the metric's own scale and each GPU against its group's median."""
        self.deviation = not self.deviation
        self.redraw()

    def action_next_problem(self) -> None:
        """Step the problems panel to its next problem."""
        self.query_one(ProblemsPanel).step()

    def action_open_problem(self) -> None:
        """Open the problems panel's current problem in its view."""
        self.query_one(ProblemsPanel).open()

    def on_problems_panel_stepped(self, message: ProblemsPanel.Stepped) -> None:
        """The rack's selection follows the problem the panel moved to."""
        select_problem(self, message.problem)

    def on_problems_panel_opened(self, message: ProblemsPanel.Opened) -> None:
        """Open the problem's view: detail, NVLink matrix, serving or events."""
        open_problem(self, message.problem)

    def action_move(self, dx: int, dy: int) -> None:
        """Move the selection: dy over the layout's rows (trays in order), dx over the GPUs of a row."""
        self.selected = self.layout.step(self.selected, dx, dy)
        self.redraw()

    def action_help(self) -> None:
        """List every key."""
        self.push_screen(HelpScreen(self.key_bindings))

    def action_view(self, name: str) -> None:
        """Open a view over the rack view ('rack' goes back to the rack view)."""
        from monitor.tui.screens.registry import open_view

        open_view(self, name)

    def open_gpu_detail(self, gpu: int) -> None:
        """Select rack GPU `gpu` and open its detail view."""
        self.selected = gpu
        self.redraw()
        self.action_view("detail")

    def highlight(self, name: str, gpus: tuple[int, ...]) -> None:
        """Mark an instance's GPUs in the rack view (escape clears it)."""
        self.highlight_name = name if gpus else ""
        self.query_one(RackHeatmap).set_highlight(frozenset(gpus), self.snapshot, self.metric, self.selected)
        self.redraw()

    def action_clear_highlight(self) -> None:
        """Remove the instance highlight."""
        self.highlight("", ())
