"""The rack heatmap: a Line API widget drawing the physical rack (or, in local mode, the host's own GPUs),
one cached Strip per row; heat_rows says which rows fit the size."""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from textual.strip import Strip

from collectors.rack import GPUS_PER_TRAY
from monitor.tui.widgets.diff_paint import DiffPaintWidget
from monitor.tui.widgets.heat_cells import cell_text, companion_text, switch_parts, switch_text
from monitor.tui.widgets.heat_rows import (
    HeatGeometry,
    HeatRow,
    choose_geometry,
    heat_rows,
    scroll_top,
)
from monitor.tui.widgets.heat_styles import HeatmapStyles, ramp_styles, scale_styles
from monitor.view.heat_values import HeatFrame, HeatValues
from monitor.view.layout import GpuLayout
from monitor.view.metrics import METRICS, Metric
from monitor.view.model import CellState, GpuView, RackSnapshot, SwitchTrayView
from monitor.view.serving import ServingSnapshot

__all__ = [
    "HeatRow",
    "Heatmap",
    "HeatmapStyles",
    "cell_text",
    "heat_rows",
    "ramp_styles",
    "switch_parts",
    "switch_text",
]

LABEL_WIDTH = 4
"""'T01 ' / 'SW1 ': the tray label column (the key's row puts the unit there: 'GB/s')."""
MAX_CELL_WIDTH = 24
MIN_CELL_WIDTH = max(m.width for m in METRICS) + 3
"""A cell is the widest formatted value plus a space before and ' ]' after (the selection mark)."""
EXPANDED = HeatGeometry(1, True)
EXPANDED_HEIGHT = EXPANDED.height()
"""Rows needed to draw each switch tray on its own row, plus the colour legend (30)."""


def content_height(layout: GpuLayout) -> int:
    """Rows the layout needs with one line a tray, each switch tray on a row and the colour legend."""
    return EXPANDED.height(layout)


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
        self._height = 0
        self._drawn_width = 0
        self.snapshot = RackSnapshot.empty()
        self.metric: Metric = METRICS[0]
        self.selected = 0
        self.deviation = False
        self.serving: ServingSnapshot | None = None
        self.values = HeatValues()
        self.frame: HeatFrame = self.values.frame(self.snapshot, self.metric)
        self.geometry = HeatGeometry()
        self.cell_width = 8
        self.top = 0
        """The first row drawn: 0 unless the rows do not fit and the view scrolls with the cursor."""
        self.styles_ = HeatmapStyles.plain()
        self._rows = heat_rows(self.geometry)
        self._styles_stale = False
        self._strips: dict[int, Strip] = {}
        self._keys: dict[int, tuple[object, ...]] = {}

    # -- pure row building -----------------------------------------------------------------

    @property
    def rows(self) -> list[HeatRow]:
        """Every row of the current geometry (those from `top` on are drawn)."""
        return self._rows

    @property
    def expanded(self) -> bool:
        """Whether each switch tray has its own row."""
        return self.geometry.expanded

    def row_key(self, y: int) -> tuple[object, ...]:
        """Everything row `y` depends on; a row is redrawn only when this changes."""
        row = self.rows[y]
        if row.kind in ("header", "blank"):
            return (row.kind, self.cell_width)
        if row.kind == "legend":
            return ("legend", self.cell_width, self.frame.scale)
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
                    self._line_text(gpu, row.line),
                    gpu.state,
                    self.frame.bucket(gpu.index),
                    gpu.index == self.selected,
                )
            )
        return ("compute", self.cell_width, row.label, row.line, tuple(cells))

    def row_gpus(self, row: HeatRow) -> list[GpuView | None]:
        """The GPU views of a GPU row's cells (None for an empty cell)."""
        return [None if g is None else self.snapshot.gpu(g) for g in row.gpus]

    def _switch_views(self, row: HeatRow) -> tuple[SwitchTrayView, ...]:
        return tuple(self.snapshot.switches[n - 1] for n in row.trays)

    def _line_text(self, gpu: GpuView, line: int) -> str:
        """A cell's text on line `line` of its tray: the figure, then more figures below it."""
        if line == 0:
            return cell_text(gpu, self.metric, self.frame)
        return companion_text(gpu, self.frame, line, self.cell_width - 3)

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
        label = row.label if row.line == 0 else ""
        segs = [Segment(label.ljust(LABEL_WIDTH), st.label)]
        for gpu in self.row_gpus(row):
            segs.append(Segment(" " * w, st.base) if gpu is None else self._cell(gpu, w, row.line))
        return Strip(segs, width)

    def _legend(self, width: int) -> Strip:
        """The colour scale: the unit, then each bucket's colour with its lower bound where it fits.

        A label starts at its bucket's left edge (the bound it names) and may run over the unlabelled
        buckets after it; the label column says the unit ('GB/s', 'err', 'dev%').
        """
        st = self.styles_
        scale = self.frame.scale
        ramp = scale_styles(scale)
        each = (width - LABEL_WIDTH) // scale.buckets
        text = [" "] * (each * scale.buckets)
        for b, label in enumerate(scale.legend(each)):
            # A unit that fills the label column ('GB/s') keeps a space before the first number.
            start = b * each + (b == 0 and len(scale.unit) >= LABEL_WIDTH)
            for k, char in enumerate(label):
                if start + k < len(text):
                    text[start + k] = char
        segs = [Segment(scale.unit[:LABEL_WIDTH].ljust(LABEL_WIDTH), st.header)]
        for b in range(scale.buckets):
            segs.append(Segment("".join(text[b * each : (b + 1) * each]), ramp[b]))
        used = LABEL_WIDTH + each * scale.buckets
        segs.append(Segment(" " * (width - used), st.base))
        return Strip(segs, width)

    def _cell(self, gpu: GpuView, width: int, line: int = 0) -> Segment:
        st = self.styles_
        text = self._line_text(gpu, line)
        if gpu.state is CellState.OK:
            bucket = self.frame.bucket(gpu.index)
            style = scale_styles(self.frame.scale)[bucket] if bucket is not None else st.no_data
        else:
            style = {
                CellState.LOST: st.lost,
                CellState.STALE: st.stale,
                CellState.ERROR: st.error,
                CellState.NO_DATA: st.no_data,
            }[gpu.state]
        inner = width - 2
        text = text[: inner - 1]
        if gpu.index == self.selected:
            # Brackets mark the selection where colour does not reach (16 colours, NO_COLOR).
            return Segment(f"[{text.rjust(inner - 1)} ]"[:width], style + st.selected)
        return Segment(f" {text.rjust(inner - 1)}  "[:width], style)

    # -- Textual ---------------------------------------------------------------------------

    def update_view(
        self,
        snapshot: RackSnapshot,
        metric: Metric,
        selected: int,
        *,
        deviation: bool = False,
        serving: ServingSnapshot | None = None,
    ) -> list[int]:
        """Show a new snapshot / metric / selection, repainting only the cells that changed.

        Args:
            deviation: colour each GPU by how far it sits off its group's median (heat_values).
            serving: the serving rows, which say which GPUs serve the same model (deviation's groups).

        Returns:
            The rows that changed (and were scheduled for a repaint).
        """
        if snapshot.layout != self.snapshot.layout:  # local mode: the host's GPUs, known from the first frame
            self.snapshot = snapshot
            self._relayout()
        self.snapshot, self.metric, self.selected = snapshot, metric, selected
        self.deviation, self.serving = deviation, serving
        self.frame = self.values.frame(snapshot, metric, deviation=deviation, serving=serving)
        top = scroll_top(self.rows, self.size.height, self.top, selected)
        if top != self.top:
            self.top = top
            self._reset_cache()
        changed = []
        for y in range(len(self.rows)):
            key = self.row_key(y)
            if self._keys.get(y) != key:
                self._keys[y] = key
                old = self._strips.pop(y, None)
                changed.append(y)
                if self.size.width and y >= self.top:
                    self.repaint_line(y - self.top, old, self._row_strip(y))
        return changed

    def _reset_cache(self) -> None:
        self._strips.clear()
        self._keys.clear()
        self.refresh()

    def set_geometry(self, width: int, height: int) -> None:
        """Choose the rows for a size (heat_rows.choose_geometry) and cells as wide as fit."""
        avail = (width - LABEL_WIDTH) // GPUS_PER_TRAY
        self.cell_width = max(MIN_CELL_WIDTH, min(MAX_CELL_WIDTH, avail))
        self._height = height
        self._relayout()

    def _relayout(self) -> None:
        """Rebuild the rows for the current size and layout; redraw everything when they changed."""
        geometry = choose_geometry(self._height, self.cell_width, self.snapshot.layout)
        rows = heat_rows(geometry, self.snapshot.layout)
        top = scroll_top(rows, self._height, self.top, self.selected)
        if (geometry, rows, top, self.cell_width) != (self.geometry, self._rows, self.top, self._drawn_width):
            self.geometry, self._rows, self.top, self._drawn_width = geometry, rows, top, self.cell_width
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
        )

    def get_content_width(self, container: object, viewport: object) -> int:
        """As wide as the label plus four of the widest cells."""
        return LABEL_WIDTH + GPUS_PER_TRAY * MAX_CELL_WIDTH

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        """Every row of the expanded layout; a more compact one is used when less is given."""
        return content_height(self.snapshot.layout)

    def render_line(self, y: int) -> Strip:
        """The cached strip of the y-th row drawn (built on first use after a change)."""
        if self.top + y >= len(self.rows):
            return Strip.blank(self.size.width, self.rich_style)
        return self._row_strip(self.top + y).crop_extend(0, self.size.width, self.rich_style)

    def _row_strip(self, y: int) -> Strip:
        """Row y's cached strip, built (with the CSS styles) when missing."""
        if self._styles_stale:
            self._styles_stale = False
            self.styles_ = self._styles_from_css()
        strip = self._strips.get(y)
        if strip is None:
            strip = self._strips[y] = self.build_row(y).apply_style(self.rich_style).simplify()
        return strip
