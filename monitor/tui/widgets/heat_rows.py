"""The heatmap's rows for a size: how many lines a tray gets, whether each switch tray gets its own row,
and which of the column header, spacer and colour key fit. Pure: no widget needed.

Every compute tray and the switch trays are always drawn: a short terminal (80x24 with the alert bar
showing leaves 21 rows) drops the header, spacer and key before any tray; only below 19 rows does the
view scroll, and then with the cursor (Heatmap keeps the selected tray on screen). A tall one gives
each tray two or three lines, so a cell carries more than one figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from collectors.rack import SWITCH_TRAYS, physical_order
from monitor.view.layout import RACK, GpuLayout

MULTI_LINE_CELL = 12
"""Cells narrower than this keep one line: a second line's figures ('1184W 60C') would not fit."""


@dataclass(frozen=True)
class HeatRow:
    """One row of the heatmap: the column header, a line of a row of GPUs, switch trays, spacer or key.

    Attributes:
        trays: a compute row's tray or a switch row's trays.
        label: a GPU row's label ('T16', '0-3' on a board host).
        gpus: a GPU row's GPU keys, left to right (None: an empty cell).
        line: which line of its tray a compute row is (0: the value; 1, 2: more figures).
    """

    kind: Literal["header", "compute", "switch", "blank", "legend"]
    trays: tuple[int, ...] = ()
    label: str = ""
    gpus: tuple[int | None, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class HeatGeometry:
    """Which rows the heatmap draws.

    Attributes:
        lines: lines per compute tray (1-3).
        expanded: each switch tray on its own row (else all nine on one).
        header: the column header ('Tray G1 G2 G3 G4').
        blank: a spacer above the key.
        legend: the colour key.
    """

    lines: int = 1
    expanded: bool = False
    header: bool = True
    blank: bool = True
    legend: bool = True

    def height(self, layout: GpuLayout = RACK) -> int:
        """Rows this geometry takes for `layout`."""
        switches = (SWITCH_TRAYS if self.expanded else 1) if layout.in_rack else 0
        return len(layout.rows) * self.lines + switches + self.header + self.blank + self.legend


CANDIDATES: tuple[HeatGeometry, ...] = (
    HeatGeometry(3, True),
    HeatGeometry(2, True),
    HeatGeometry(2, True, blank=False),
    HeatGeometry(2, False),
    HeatGeometry(2, False, blank=False),
    HeatGeometry(1, True),
    HeatGeometry(1, True, blank=False),
    HeatGeometry(1, False),
    HeatGeometry(1, False, blank=False),
    HeatGeometry(1, False, header=False, blank=False),
    HeatGeometry(1, False, header=False, blank=False, legend=False),
)
"""From the richest to the most compact; the first that fits is drawn."""

SMALLEST = CANDIDATES[-1]


def choose_geometry(height: int, cell_width: int, layout: GpuLayout = RACK) -> HeatGeometry:
    """The richest geometry that fits `height` rows (the most compact one, scrolled, when none does)."""
    for geometry in CANDIDATES:
        if geometry.lines > 1 and cell_width < MULTI_LINE_CELL:
            continue
        if geometry.height(layout) <= height:
            return geometry
    return SMALLEST


def heat_rows(geometry: HeatGeometry, layout: GpuLayout = RACK) -> list[HeatRow]:
    """The heatmap's rows top to bottom in the physical rack's order (switch trays between T10 and T11).

    A host's layout (local mode) has its own rows and no switch trays: only the GPUs that exist.
    """
    rows = [HeatRow("header")] if geometry.header else []

    def tray_lines(label: str, gpus: tuple[int | None, ...], trays: tuple[int, ...] = ()) -> None:
        rows.extend(HeatRow("compute", trays, label, gpus, line) for line in range(geometry.lines))

    if not layout.in_rack:
        for r in layout.rows:
            tray_lines(r.label, r.gpus)
    else:
        switch_done = False
        for unit in physical_order():
            if unit.kind == "compute":
                row = layout.rows[unit.number - 1]
                tray_lines(row.label, row.gpus, (unit.number,))
            elif geometry.expanded:
                rows.append(HeatRow("switch", (unit.number,)))
            elif not switch_done:
                rows.append(HeatRow("switch", tuple(range(1, SWITCH_TRAYS + 1))))
                switch_done = True
    if geometry.blank:
        rows.append(HeatRow("blank"))
    if geometry.legend:
        rows.append(HeatRow("legend"))
    return rows


def scroll_top(rows: list[HeatRow], height: int, top: int, selected: int | None) -> int:
    """The first row to draw so that the selected GPU's tray is on screen (0 when every row fits)."""
    if len(rows) <= height or height <= 0:
        return 0
    lines = [y for y, r in enumerate(rows) if r.kind == "compute" and selected in r.gpus]
    if lines:
        if lines[0] < top:
            top = lines[0]
        elif lines[-1] >= top + height:
            top = lines[-1] - height + 1
    return max(0, min(top, len(rows) - height))
