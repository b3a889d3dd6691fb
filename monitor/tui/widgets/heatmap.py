"""The rack heatmap: a Line API widget drawing the physical rack (or, in local mode, the host's own GPUs),
one cached Strip per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.segment import Segment
from rich.style import Style
from textual.color import Color, Gradient
from textual.strip import Strip

from collectors.rack import (
    COMPUTE_TRAYS,
    GPUS_PER_TRAY,
    SWITCH_TRAYS,
    physical_order,
)
from monitor.tui.widgets.diff_paint import DiffPaintWidget
from monitor.tui.widgets.heat_cells import cell_text, legend_number, switch_parts, switch_text
from monitor.view.layout import RACK, GpuLayout
from monitor.view.metrics import BUCKETS, METRICS, Metric
from monitor.view.model import CellState, GpuView, RackSnapshot, SwitchTrayView

__all__ = ["HeatRow", "Heatmap", "cell_text", "heat_rows", "legend_number", "switch_parts", "switch_text"]

LABEL_WIDTH = 4
"""'T01 ' / 'SW1 ': the tray label column."""
MAX_CELL_WIDTH = 12
MIN_CELL_WIDTH = max(m.width for m in METRICS) + 3
"""A cell is the widest formatted value plus a space before and ' ]' after (the selection mark)."""
EXPANDED_HEIGHT = 1 + COMPUTE_TRAYS + SWITCH_TRAYS + 2
"""Rows needed to draw each switch tray on its own row, plus the colour legend (30)."""

RAMP_COLORS = ("#2d1b4e", "#3b3f8c", "#2f6f9f", "#21918c", "#35b779", "#90d743", "#fde725")
"""Low to high, viridis-like: few, well-separated stops so the buckets survive 256-colour quantisation.
No red in the ramp: red means LOST or an alarm, so a lost GPU stands out on a busy, hot rack."""


@dataclass(frozen=True)
class HeatRow:
    """One row of the heatmap: the column header, a row of GPUs (a compute tray), or switch trays.

    Attributes:
        trays: a compute row's tray or a switch row's trays.
        label: a GPU row's label ('T16', '0-3' on a board host).
        gpus: a GPU row's GPU keys, left to right (None: an empty cell).
    """

    kind: Literal["header", "compute", "switch", "blank", "legend"]
    trays: tuple[int, ...] = ()
    label: str = ""
    gpus: tuple[int | None, ...] = ()


def content_height(layout: GpuLayout) -> int:
    """Rows the layout needs with its legend: the rack's switch trays each on a row, a host's rows only."""
    return EXPANDED_HEIGHT if layout.in_rack else 1 + len(layout.rows) + 2


def heat_rows(expanded: bool, layout: GpuLayout = RACK) -> list[HeatRow]:
    """The heatmap's rows top to bottom; switch trays get a row each only when `expanded`.

    A host's layout (local mode) has its own rows and no switch trays: only the GPUs that exist.
    """
    rows = [HeatRow("header")]
    if not layout.in_rack:
        rows += [HeatRow("compute", label=r.label, gpus=r.gpus) for r in layout.rows]
        return rows + ([HeatRow("blank"), HeatRow("legend")] if expanded else [])
    switch_done = False
    for unit in physical_order():
        if unit.kind == "compute":
            row = layout.rows[unit.number - 1]
            rows.append(HeatRow("compute", (unit.number,), row.label, row.gpus))
        elif expanded:
            rows.append(HeatRow("switch", (unit.number,)))
        elif not switch_done:
            rows.append(HeatRow("switch", tuple(range(1, SWITCH_TRAYS + 1))))
            switch_done = True
    if expanded:
        rows += [HeatRow("blank"), HeatRow("legend")]
    return rows


def ramp_styles(colors: tuple[str, ...] = RAMP_COLORS) -> tuple[Style, ...]:
    """One background+contrasting-text style per colour bucket."""
    gradient = Gradient(*((i / (len(colors) - 1), Color.parse(c)) for i, c in enumerate(colors)))
    styles = []
    for b in range(BUCKETS):
        bg = gradient.get_color(b / (BUCKETS - 1))
        styles.append(Style(bgcolor=bg.rich_color, color=bg.get_contrast_text(1.0).rich_color))
    return tuple(styles)


@dataclass(frozen=True)
class HeatmapStyles:
    """The Rich styles the row builder uses (from the widget's component classes when mounted)."""

    base: Style
    label: Style
    header: Style
    lost: Style
    stale: Style
    error: Style
    no_data: Style
    switch: Style
    alarm: Style
    selected: Style
    ramp: tuple[Style, ...]

    @classmethod
    def plain(cls) -> HeatmapStyles:
        """Fixed styles that need no running app (unit tests, screenshots of a widget)."""
        return cls(
            base=Style(),
            label=Style(bold=True),
            header=Style(bold=True),
            lost=Style(color="red", reverse=True, bold=True),
            stale=Style(dim=True),
            error=Style(color="yellow", reverse=True, bold=True),
            no_data=Style(dim=True),
            switch=Style(dim=True),
            alarm=Style(color="red", bold=True),
            selected=Style(bold=True, underline=True),
            ramp=ramp_styles(),
        )


class Heatmap(DiffPaintWidget):
    """The physical rack: compute trays as rows of 4 GPU cells, switch trays drawn between them."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "heatmap--label",
        "heatmap--header",
        "heatmap--lost",
        "heatmap--stale",
        "heatmap--error",
        "heatmap--nodata",
        "heatmap--switch",
        "heatmap--alarm",
        "heatmap--selected",
    }
    """Colours live in CSS so themes apply; the value ramp is fixed (it encodes data, not chrome)."""

    DEFAULT_CSS = """
    Heatmap { width: auto; height: auto; min-width: 37; }
    Heatmap > .heatmap--label { text-style: bold; }
    Heatmap > .heatmap--header { text-style: bold; color: $text-muted; }
    Heatmap > .heatmap--lost { background: $error; color: $text; text-style: bold; }
    Heatmap > .heatmap--stale { color: $text-disabled; }
    Heatmap > .heatmap--error { background: $warning; color: $text; text-style: bold; }
    Heatmap > .heatmap--nodata { color: $text-disabled; }
    Heatmap > .heatmap--switch { color: $text-muted; }
    Heatmap > .heatmap--alarm { color: $error; text-style: bold; }
    Heatmap > .heatmap--selected { text-style: bold underline; }
    """

    def __init__(
        self,
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """An empty rack (every GPU without data) until update_view() is called."""
        super().__init__(id=id, classes=classes)
        self.snapshot = RackSnapshot.empty()
        self.metric: Metric = METRICS[0]
        self.selected = 0
        self.expanded = False
        self.cell_width = 8
        self.styles_ = HeatmapStyles.plain()
        self._rows = heat_rows(self.expanded)
        self._styles_stale = False
        self._strips: dict[int, Strip] = {}
        self._keys: dict[int, tuple[object, ...]] = {}

    # -- pure row building -----------------------------------------------------------------

    @property
    def rows(self) -> list[HeatRow]:
        """The rows drawn at the current height."""
        return self._rows

    def row_key(self, y: int) -> tuple[object, ...]:
        """Everything row `y` depends on; a row is redrawn only when this changes."""
        row = self.rows[y]
        if row.kind in ("header", "blank"):
            return (row.kind, self.cell_width)
        if row.kind == "legend":
            return ("legend", self.cell_width, self.metric)
        if row.kind == "switch":
            width = self.cell_width * GPUS_PER_TRAY
            return ("switch", width, tuple(switch_text(self._switch_views(row), width)))
        cells: list[tuple[object, ...] | None] = []
        for gpu in self.row_gpus(row):
            if gpu is None:
                cells.append(None)
                continue
            cells.append(
                (
                    cell_text(gpu, self.metric),
                    gpu.state,
                    self.metric.bucket(gpu.values.get(self.metric.name)),
                    gpu.index == self.selected,
                )
            )
        return ("compute", self.cell_width, row.label, tuple(cells))

    def row_gpus(self, row: HeatRow) -> list[GpuView | None]:
        """The GPU views of a GPU row's cells (None for an empty cell)."""
        return [None if g is None else self.snapshot.gpu(g) for g in row.gpus]

    def _switch_views(self, row: HeatRow) -> tuple[SwitchTrayView, ...]:
        return tuple(self.snapshot.switches[n - 1] for n in row.trays)

    def build_row(self, y: int) -> Strip:
        """Render row `y` with the current snapshot, metric and selection (no app needed)."""
        st = self.styles_
        row = self.rows[y]
        w = self.cell_width
        width = LABEL_WIDTH + GPUS_PER_TRAY * w
        if row.kind == "header":
            corner, columns = self.snapshot.layout.header()
            segs = [Segment(corner.ljust(LABEL_WIDTH), st.header)]
            segs += [Segment(c.center(w), st.header) for c in columns]
            return Strip(segs, width)
        if row.kind == "blank":
            return Strip([Segment(" " * width, st.base)], width)
        if row.kind == "legend":
            return self._legend(width)
        if row.kind == "switch":
            # All nine trays on one row read as 'SW' (their chips show when there is room).
            label = f"SW{row.trays[0]}" if len(row.trays) == 1 else "SW"
            segs = [Segment(label.ljust(LABEL_WIDTH), st.switch)]
            parts = switch_text(self._switch_views(row), width - LABEL_WIDTH)
            for n, (part, trouble) in enumerate(parts):
                segs.append(Segment(("  " if n else "") + part, st.alarm if trouble else st.switch))
            return Strip(segs).crop_extend(0, width, st.switch)
        segs = [Segment(row.label.ljust(LABEL_WIDTH), st.label)]
        for gpu in self.row_gpus(row):
            segs.append(Segment(" " * w, st.base) if gpu is None else self._cell(gpu, w))
        return Strip(segs, width)

    def _legend(self, width: int) -> Strip:
        """The colour scale: each bucket's lower bound on its colour, so colours can be read back."""
        st = self.styles_
        m = self.metric
        step = (m.hi - m.lo) / BUCKETS
        each = (width - LABEL_WIDTH) // BUCKETS
        segs = [Segment("key".ljust(LABEL_WIDTH), st.header)]
        for b in range(BUCKETS):
            text = legend_number(m.lo + b * step, step, each - 1)
            segs.append(Segment(text.center(each), st.ramp[b]))
        used = LABEL_WIDTH + each * BUCKETS
        segs.append(Segment(" " * (width - used), st.base))
        return Strip(segs, width)

    def _cell(self, gpu: GpuView, width: int) -> Segment:
        st = self.styles_
        text = cell_text(gpu, self.metric)
        if gpu.state is CellState.OK:
            bucket = self.metric.bucket(gpu.values.get(self.metric.name))
            style = st.ramp[bucket] if bucket is not None else st.no_data
        else:
            style = {
                CellState.LOST: st.lost,
                CellState.STALE: st.stale,
                CellState.ERROR: st.error,
                CellState.NO_DATA: st.no_data,
            }[gpu.state]
        inner = width - 2
        if gpu.index == self.selected:
            # Brackets mark the selection where colour does not reach (16 colours, NO_COLOR).
            return Segment(f"[{text.rjust(inner - 1)} ]"[:width], style + st.selected)
        return Segment(f" {text.rjust(inner - 1)}  "[:width], style)

    # -- Textual ---------------------------------------------------------------------------

    def update_view(self, snapshot: RackSnapshot, metric: Metric, selected: int) -> list[int]:
        """Show a new snapshot / metric / selection, repainting only the cells that changed.

        Returns:
            The rows that changed (and were scheduled for a repaint).
        """
        if snapshot.layout != self.snapshot.layout:  # local mode: the host's GPUs, known from the first frame
            self._rows = heat_rows(self.expanded, snapshot.layout)
            self._keys.clear()
            self._strips.clear()
        self.snapshot, self.metric, self.selected = snapshot, metric, selected
        changed = []
        for y in range(len(self.rows)):
            key = self.row_key(y)
            if self._keys.get(y) != key:
                self._keys[y] = key
                old = self._strips.pop(y, None)
                changed.append(y)
                if self.size.width:
                    self.repaint_line(y, old, self._row_strip(y))
        return changed

    def _reset_cache(self) -> None:
        self._strips.clear()
        self._keys.clear()
        self.refresh()

    def set_geometry(self, width: int, height: int) -> None:
        """Choose the layout for a size: switch rows expanded when tall enough, cells as wide as fit."""
        expanded = height >= content_height(self.snapshot.layout)
        avail = (width - LABEL_WIDTH) // GPUS_PER_TRAY
        cell = max(MIN_CELL_WIDTH, min(MAX_CELL_WIDTH, avail))
        if (expanded, cell) != (self.expanded, self.cell_width):
            self.expanded, self.cell_width = expanded, cell
            self._rows = heat_rows(expanded, self.snapshot.layout)
            self._reset_cache()

    def on_resize(self) -> None:
        """Re-pick the layout for the new size."""
        self.set_geometry(self.size.width, self.size.height)

    def notify_style_update(self) -> None:
        """The theme or CSS changed: rebuild the styles on the next paint and redraw every row."""
        super().notify_style_update()
        # Component styles are not readable yet while the stylesheet is being applied.
        self._styles_stale = True
        self._reset_cache()

    def _styles_from_css(self) -> HeatmapStyles:
        """The row builder's styles, read from the component classes."""
        get = self.get_component_rich_style
        return HeatmapStyles(
            base=self.rich_style,
            label=get("heatmap--label"),
            header=get("heatmap--header"),
            lost=get("heatmap--lost"),
            stale=get("heatmap--stale"),
            error=get("heatmap--error"),
            no_data=get("heatmap--nodata"),
            switch=get("heatmap--switch"),
            alarm=get("heatmap--alarm"),
            selected=get("heatmap--selected", partial=True),
            ramp=ramp_styles(),
        )

    def get_content_width(self, container: object, viewport: object) -> int:
        """As wide as the label plus four of the widest cells."""
        return LABEL_WIDTH + GPUS_PER_TRAY * MAX_CELL_WIDTH

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        """Every row of the expanded layout; the collapsed one is used when less is given."""
        return content_height(self.snapshot.layout)

    def render_line(self, y: int) -> Strip:
        """The cached strip of row y (built on first use after a change)."""
        if y >= len(self.rows):
            return Strip.blank(self.size.width, self.rich_style)
        return self._row_strip(y).crop_extend(0, self.size.width, self.rich_style)

    def _row_strip(self, y: int) -> Strip:
        """Row y's cached strip, built (with the CSS styles) when missing."""
        if self._styles_stale:
            self._styles_stale = False
            self.styles_ = self._styles_from_css()
        strip = self._strips.get(y)
        if strip is None:
            strip = self._strips[y] = self.build_row(y).apply_style(self.rich_style).simplify()
        return strip
