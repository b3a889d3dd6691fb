"""The NVLink view: the 72 x 18 link matrix, its column (switch chip) totals and the cursor link's detail."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from collectors.rack import switch_chip
from monitor.tui.screens.base import LiveScreen
from monitor.tui.widgets.diff_paint import LinePanel
from monitor.tui.widgets.nvlink_matrix import Mode, NvlinkMatrixView
from monitor.view.layout import RACK, GpuLayout
from monitor.view.model import RackSnapshot, clock_text
from monitor.view.nvlink import CLIMBING_SAMPLES, LINE_GBPS, NvlinkBuilder, NvlinkMatrix, rack_nvlink_text
from storage.frame import Frame

STATE_NAMES = {0: "DOWN (inactive)", 1: "up", 2: "sleep", 3: "up, no traffic"}


def link_detail(matrix: NvlinkMatrix, gpu: int, link: int, layout: GpuLayout = RACK) -> Text:
    """One line about the cursor link: where it lands, its state, rate, error growth, whether it climbs."""
    view = matrix.link(gpu, link)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{layout.label(gpu)} L{link}", style="bold")
    if layout.kind == "board":  # an HGX board's links land on its own NVSwitches, not the rack's trays
        text.append(": ")
    else:
        tray, chip = switch_chip(link)
        text.append(f" -> switch tray {tray} chip {chip}: ")
    state = "no data" if view.state is None else STATE_NAMES.get(view.state, f"state {view.state}")
    text.append(state, style="bold red" if view.down else "")
    if view.implausible:
        text.append(f"  rate above the {LINE_GBPS:g} GB/s line rate: implausible", style="bold red")
    elif view.gbps is not None:
        text.append(f"  {view.gbps:.1f} GB/s")
    if view.errors is not None:
        text.append(f"  errors +{view.errors} in {matrix.window_s:.0f}s")
    if view.flagged:
        text.append(
            f"  ! CLIMBING: grew in {view.climbing} samples (>= {CLIMBING_SAMPLES})", style="bold yellow"
        )
    return text


def summary_line(matrix: NvlinkMatrix, mode: Mode, layout: GpuLayout = RACK) -> Text:
    """Rack (or in local mode host) totals of the matrix and what the cells show."""
    text = Text(no_wrap=True, overflow="ellipsis")
    shows = (
        "TX+RX GB/s per link" if mode == "traffic" else f"error growth per link over {matrix.window_s:.0f}s"
    )
    text.append(f"cells: {shows}  ")
    if mode == "traffic" and matrix.rates is not None:
        where = "rack" if layout.in_rack else "host"
        text.append(f"{where} {rack_nvlink_text(matrix.rates, len(layout.gpus))}  ")
    text.append(f"down {matrix.down}", style="bold red" if matrix.down else "")
    text.append("  ")
    text.append(f"climbing {matrix.flagged}", style="bold yellow" if matrix.flagged else "")
    if matrix.ts_ms is not None:
        text.append(f"  data at {clock_text(matrix.ts_ms)}", style="dim")
    return text


class NvlinkScreen(LiveScreen):
    """Every NVLink of the rack; a failing switch chip shows as a column."""

    view_name = "NVLink matrix"

    BINDINGS: ClassVar[list[BindingType]] = [
        *LiveScreen.BINDINGS,
        Binding("n", "mode('traffic')", "traffic", tooltip="Cells show TX+RX GB/s", id="nvlink-traffic"),
        Binding("e", "mode('errors')", "errors", tooltip="Cells show error growth", id="nvlink-errors"),
        Binding("up", "move(-1, 0)", "up", tooltip="Cursor to the GPU above", id="nvlink-up", show=False),
        Binding(
            "down", "move(1, 0)", "down", tooltip="Cursor to the GPU below", id="nvlink-down", show=False
        ),
        Binding(
            "left", "move(0, -1)", "left", tooltip="Cursor to the link left", id="nvlink-left", show=False
        ),
        Binding(
            "right", "move(0, 1)", "right", tooltip="Cursor to the link right", id="nvlink-right", show=False
        ),
        Binding("pageup", "page(-1)", "page up", tooltip="A page of GPUs up", id="nvlink-pageup", show=False),
        Binding(
            "pagedown",
            "page(1)",
            "page down",
            tooltip="A page of GPUs down",
            id="nvlink-pagedown",
            show=False,
        ),
        Binding("enter", "detail", "GPU detail", tooltip="Open the cursor GPU's detail", id="nvlink-detail"),
        Binding("question_mark", "help", "help", tooltip="Show this list of keys", id="nvlink-help"),
    ]

    def __init__(self, mode: Mode = "traffic") -> None:
        """The matrix, showing `mode` first."""
        super().__init__()
        self.mode: Mode = mode
        self.matrix = NvlinkMatrix.empty()
        self._builder = NvlinkBuilder()

    def compose(self) -> ComposeResult:
        """Summary, matrix, cursor detail, keys."""
        yield LinePanel(id="nvlink-summary", classes="view--line")
        yield NvlinkMatrixView(id="matrix")
        yield LinePanel(id="nvlink-detail", classes="view--line")
        yield Static(
            "↑↓←→ cursor  PgUp/PgDn page  n traffic  e errors  enter GPU detail  esc back  ? help",
            classes="view--keys",
        )

    def on_mount(self) -> None:
        """Put the cursor on the rack view's selected GPU."""
        view = self.query_one(NvlinkMatrixView)
        view.set_border_text(title="NVLink: GPU rows x link columns (link k -> switch chip k)")
        view.set_layout(self.rack.snapshot.layout)
        view.place_cursor(self.rack.selected, 0)

    def frames_needed(self) -> int:
        """The error window's frames."""
        return self._builder.frames_needed()

    def build_model(self, frames: list[Frame], snapshot: RackSnapshot) -> NvlinkMatrix:
        """The matrix (thread)."""
        self._builder.interval_ms = snapshot.interval_ms
        return self._builder.build(frames)

    def show(self, model: NvlinkMatrix, snapshot: RackSnapshot) -> None:
        """Draw the matrix and its lines."""
        self.matrix = model
        self._redraw()

    def _redraw(self) -> None:
        view = self.query_one(NvlinkMatrixView)
        view.update_matrix(self.matrix, self.mode)
        view.set_border_text(subtitle="traffic" if self.mode == "traffic" else "errors")
        summary = summary_line(self.matrix, self.mode, view.gpu_layout)
        self.query_one("#nvlink-summary", LinePanel).show_text(summary)
        detail = link_detail(self.matrix, view.gpu, view.link, view.gpu_layout)
        self.query_one("#nvlink-detail", LinePanel).show_text(detail)

    def action_mode(self, mode: Mode) -> None:
        """Show traffic or error growth."""
        self.mode = mode
        self._redraw()

    def action_move(self, dgpu: int, dlink: int) -> None:
        """Move the cursor; the rack view's selection follows the GPU."""
        view = self.query_one(NvlinkMatrixView)
        view.move_cursor(dgpu, dlink)
        self.rack.selected = view.gpu
        self._redraw()

    def action_page(self, pages: int) -> None:
        """Move the cursor a page of GPU rows."""
        view = self.query_one(NvlinkMatrixView)
        self.action_move(pages * view.body_rows, 0)

    def action_detail(self) -> None:
        """The cursor GPU's detail view."""
        self.rack.open_gpu_detail(self.query_one(NvlinkMatrixView).gpu)
