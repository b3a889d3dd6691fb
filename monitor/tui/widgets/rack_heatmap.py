"""The rack heatmap with a highlighted group of GPUs (an inference instance picked in the serving view).

Highlighted cells carry a '*' where other cells have a space, so the group reads without colour too.
"""

from __future__ import annotations

from rich.segment import Segment

from monitor.tui.widgets.heatmap import Heatmap
from monitor.view.metrics import Metric
from monitor.view.model import GpuView, RackSnapshot


class RackHeatmap(Heatmap):
    """Heatmap plus a set of highlighted GPUs."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        """No GPU highlighted."""
        super().__init__(id=id, classes=classes)
        self.highlighted: frozenset[int] = frozenset()

    def set_highlight(
        self, gpus: frozenset[int], snapshot: RackSnapshot, metric: Metric, selected: int
    ) -> None:
        """Highlight `gpus` (empty: none), repainting the rows that change."""
        self.highlighted = gpus
        self.update_view(snapshot, metric, selected, deviation=self.deviation, serving=self.serving)

    def row_key(self, y: int) -> tuple[object, ...]:
        """The base key plus which of the row's GPUs are highlighted."""
        key = super().row_key(y)
        row = self.rows[y]
        if row.kind != "compute":
            return key
        marks = tuple(g in self.highlighted for g in row.gpus)
        return (*key, marks)

    def _cell(self, gpu: GpuView, width: int, line: int = 0) -> Segment:
        segment = super()._cell(gpu, width, line)
        if gpu.index not in self.highlighted or gpu.index == self.selected:
            return segment
        return Segment("*" + segment.text[1:], (segment.style or self.styles_.base) + self.styles_.selected)
