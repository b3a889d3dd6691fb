"""The NVLink matrix: 72 GPU rows (a host's own in local mode) x 18 link columns (link k = switch chip k),
a Line API widget.

The header and three rows of column totals stay put; the GPU rows page under them, so the matrix fits
80x24 and uses 200x50. Every cell says what it means without colour: a rate or an error count, 'DN'
for a link that is down, '!' before a link whose error counters keep climbing, '·' for no data, '!?' for
a rate above the line rate (implausible: not a number anyone should act on, and left out of the totals,
whose cell then carries a '?'). Cells show the rates of monitor.view.nvlink unheld, so a link reads the
same here as in the GPU detail and the column totals add up to the header's rack total.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from collectors.rack import LINKS_PER_GPU
from monitor.tui.widgets.diff_paint import DiffPaintWidget
from monitor.tui.widgets.heatmap import ramp_styles
from monitor.view.layout import RACK, GpuLayout
from monitor.view.metrics import BUCKETS
from monitor.view.nvlink import LINK_MAX_GBPS, LinkColumn, LinkView, NvlinkMatrix

Mode = Literal["traffic", "errors"]
LABEL_WIDTH = 8
"""A mark ('>' cursor, '!' trouble), 'T01.G1', a space."""
MIN_CELL = 3
MAX_CELL = 7
FOOTER = ("TB/s", "down", "climb")
"""The column-total rows under the GPUs: per switch chip throughput (or errors), links down, climbing."""


def fit_number(value: float, width: int, decimals: int = 1) -> str:
    """A number in at most `width` characters: decimals when they fit, else an integer, else '+' marks."""
    for d in range(decimals, -1, -1):
        text = f"{value:.{d}f}"
        if len(text) <= width:
            return text
    return "+" * width


def link_cell(view: LinkView, mode: Mode, width: int) -> tuple[str, str]:
    """(text, kind) of one link's cell; kind is ok | down | climb | err | none."""
    room = width - 1
    if view.state is None:
        return "·", "none"
    if view.down:
        return ("DOWN" if room >= 4 else "DN"), "down"
    mark = "!" if view.flagged else ""
    if mode == "errors":
        value = view.errors
        text = fit_number(value, room - len(mark), 0) if value else ("." if value == 0 else "?")
        return mark + text, "climb" if view.flagged else ("err" if value else "ok")
    if view.implausible:
        return mark + "!?", "err"
    if view.gbps is None:
        return mark + "?", "climb" if view.flagged else "none"
    # Whole GB/s: a tenth changes every tick on every link, which costs bytes over SSH and tells nothing.
    text = fit_number(view.gbps, room - len(mark), 0 if view.gbps >= 1 else 1)
    return mark + text, "climb" if view.flagged else "ok"


def link_bucket(view: LinkView, mode: Mode) -> int | None:
    """The colour bucket of a traffic cell (None: the cell is coloured by its kind instead)."""
    if mode != "traffic" or view.gbps is None or view.down or view.flagged or view.state is None:
        return None
    return min(BUCKETS - 1, int(view.gbps / LINK_MAX_GBPS * BUCKETS))


def footer_cell(column: LinkColumn, row: str, mode: Mode, width: int) -> tuple[str, str]:
    """(text, kind) of a column total."""
    room = width - 1
    if row == "TB/s":
        if mode == "errors":
            return (fit_number(column.errors, room, 0) if column.errors else "."), (
                "err" if column.errors else "ok"
            )
        if column.gbps is None:
            return ("?" if column.implausible else "·"), ("err" if column.implausible else "none")
        if column.implausible:  # the total leaves implausible links out, and says so
            return fit_number(column.gbps / 1000, room - 1, 1) + "?", "err"
        return fit_number(column.gbps / 1000, room, 1), "ok"
    count = column.down if row == "down" else column.flagged
    if not count:
        return ".", "ok"
    return fit_number(count, room, 0), "down" if row == "down" else "climb"


class NvlinkMatrixView(DiffPaintWidget, can_focus=True):
    """The matrix, with a cursor on one (GPU, link) cell."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "matrix--header",
        "matrix--down",
        "matrix--climb",
        "matrix--err",
        "matrix--none",
        "matrix--cursor",
    }

    DEFAULT_CSS = """
    NvlinkMatrixView { height: 1fr; }
    NvlinkMatrixView > .matrix--header { text-style: bold; color: $text-muted; }
    NvlinkMatrixView > .matrix--down { background: $error; color: $text; text-style: bold; }
    NvlinkMatrixView > .matrix--climb { background: $warning; color: $text; text-style: bold; }
    NvlinkMatrixView > .matrix--err { color: $error; text-style: bold; }
    NvlinkMatrixView > .matrix--none { color: $text-disabled; }
    NvlinkMatrixView > .matrix--cursor { text-style: reverse bold; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """An empty matrix with the cursor on T01.G1 link 0."""
        super().__init__(id=id)
        self.matrix = NvlinkMatrix.empty()
        self.mode: Mode = "traffic"
        self.gpu_layout: GpuLayout = RACK
        """Whose GPUs get a row: the rack's 72, or in local mode this host's."""
        self.gpu = 0
        self.link = 0
        self.top = 0
        self.cell_width = MIN_CELL
        self._ramp = ramp_styles()
        self._styles: dict[str, Style] = {}
        self._strips: dict[int, tuple[tuple[object, ...], Strip]] = {}

    # -- geometry --------------------------------------------------------------------------

    @property
    def body_rows(self) -> int:
        """GPU rows visible between the header and the footer."""
        return max(1, self.size.height - 1 - len(FOOTER))

    def set_layout(self, layout: GpuLayout) -> None:
        """Show a row per GPU of `layout` (the rack's, or this host's in local mode)."""
        if layout != self.gpu_layout:
            self.gpu_layout = layout
            self._strips.clear()
            self.place_cursor(self.gpu, self.link)

    def place_cursor(self, gpu: int, link: int) -> None:
        """Put the cursor on GPU `gpu` (the first of the layout when it holds no such GPU), link `link`
        (clamped), and page so its row is visible."""
        gpus = self.gpu_layout.gpus
        self._go(gpus.index(gpu) if gpu in gpus else 0, link)

    def move_cursor(self, rows: int, links: int) -> None:
        """Move the cursor `rows` GPU rows down (negative: up) and `links` links right, clamped."""
        gpus = self.gpu_layout.gpus
        at = gpus.index(self.gpu) if self.gpu in gpus else 0
        self._go(at + rows, self.link + links)

    def _go(self, position: int, link: int) -> None:
        gpus = self.gpu_layout.gpus
        position = min(len(gpus) - 1, max(0, position))
        self.gpu = gpus[position] if gpus else 0
        self.link = min(LINKS_PER_GPU - 1, max(0, link))
        rows = self.body_rows
        if position < self.top:
            self.top = position
        elif position >= self.top + rows:
            self.top = position - rows + 1
        self.top = max(0, min(self.top, len(gpus) - rows))
        self.refresh()

    def on_resize(self) -> None:
        """Cells as wide as fit (3..7 characters); keep the cursor visible."""
        avail = (self.size.width - LABEL_WIDTH) // LINKS_PER_GPU
        self.cell_width = max(MIN_CELL, min(MAX_CELL, avail))
        self._strips.clear()
        self.place_cursor(self.gpu, self.link)

    # -- rows ------------------------------------------------------------------------------

    def row_at(self, y: int) -> tuple[str, int]:
        """What screen row y shows: ('header', 0), ('gpu', index), ('footer', n) or ('blank', 0)."""
        height = self.size.height
        if y == 0:
            return "header", 0
        footer_start = height - len(FOOTER)
        if y >= footer_start:
            return "footer", y - footer_start
        index = self.top + y - 1
        gpus = self.gpu_layout.gpus
        return ("gpu", gpus[index]) if index < len(gpus) else ("blank", 0)

    def row_key(self, kind: str, n: int) -> tuple[object, ...]:
        """Everything a row depends on: a row is rebuilt only when this changes."""
        w, mode = self.cell_width, self.mode
        if kind == "header":
            return (kind, w, self.link)
        if kind == "footer":
            return (kind, n, w, mode, tuple(footer_cell(c, FOOTER[n], mode, w) for c in self.matrix.columns))
        if kind == "gpu":
            cells = tuple((*link_cell(v, mode, w), link_bucket(v, mode)) for v in self.matrix.gpu_links(n))
            cursor = self.link if n == self.gpu else -1
            return (kind, n, w, cursor, cells)
        return (kind, w)

    def _style(self, kind: str) -> Style:
        if not self._styles:
            names = ("header", "down", "climb", "err", "none", "cursor")
            self._styles = {k: self.get_component_rich_style(f"matrix--{k}") for k in names}
        return self._styles.get(kind, Style())

    def build_row(self, kind: str, n: int) -> Strip:
        """Render one row (header, GPU n, footer n) at the current width and mode."""
        w = self.cell_width
        width = LABEL_WIDTH + w * LINKS_PER_GPU
        header = self._style("header")
        if kind == "header":
            segs = [Segment("GPU \\ L".ljust(LABEL_WIDTH), header)]
            for k in range(LINKS_PER_GPU):
                style = header + self._style("cursor") if k == self.link else header
                segs.append(Segment(str(k).rjust(w - 1) + " ", style))
            return Strip(segs, width)
        if kind == "footer":
            label = "errors" if FOOTER[n] == "TB/s" and self.mode == "errors" else FOOTER[n]
            segs = [Segment(f" {label}".ljust(LABEL_WIDTH), header)]
            for c in self.matrix.columns:
                text, cell_kind = footer_cell(c, FOOTER[n], self.mode, w)
                segs.append(self._cell(text, cell_kind, w, None))
            return Strip(segs, width)
        if kind != "gpu":
            return Strip([Segment(" " * width)], width)
        links = self.matrix.gpu_links(n)
        trouble = any(v.down or v.flagged for v in links)
        mark = ">" if n == self.gpu else ("!" if trouble else " ")
        label_style = self._style("down") if trouble else header
        segs = [Segment(mark, header), Segment(self.gpu_layout.label(n).ljust(6), label_style), Segment(" ")]
        for k, view in enumerate(links):
            text, cell_kind = link_cell(view, self.mode, w)
            cell = self._cell(text, cell_kind, w, link_bucket(view, self.mode))
            if n == self.gpu and k == self.link:
                cell = Segment(cell.text, (cell.style or Style()) + self._style("cursor"))
            segs.append(cell)
        return Strip(segs, width)

    def _cell(self, text: str, kind: str, width: int, bucket: int | None) -> Segment:
        style = self._ramp[bucket] if bucket is not None else self._style(kind)
        return Segment(text.rjust(width - 1)[: width - 1] + " ", style)

    # -- Textual ---------------------------------------------------------------------------

    def update_matrix(self, matrix: NvlinkMatrix, mode: Mode) -> int:
        """Show a new matrix / mode; repaint only the cells that changed. Returns the rows changed."""
        self.matrix, self.mode = matrix, mode
        changed = 0
        for y in range(self.size.height):
            kind, n = self.row_at(y)
            cached = self._strips.get(y)
            if cached is None or cached[0] != self.row_key(kind, n):
                self.repaint_line(y, cached[1] if cached else None, self._row_strip(y))
                changed += 1
        return changed

    def notify_style_update(self) -> None:
        """Theme or CSS changed: re-read the styles and redraw."""
        super().notify_style_update()
        self._styles = {}
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        """Row y from the cache, rebuilt when what it shows changed."""
        return self._row_strip(y).crop_extend(0, self.size.width, self.rich_style)

    def _row_strip(self, y: int) -> Strip:
        """Screen row y's cached strip, rebuilt when its key changed."""
        kind, n = self.row_at(y)
        key = self.row_key(kind, n)
        cached = self._strips.get(y)
        if cached is None or cached[0] != key:
            cached = self._strips[y] = (key, self.build_row(kind, n).apply_style(self.rich_style).simplify())
        return cached[1]
