"""The GPU detail view: every metric of one GPU now, its history charts with events marked, its links,
its events and the inference instance it serves.

5 min of history comes from the head; 1 h and 24 h from the store's 1-minute rollups when the app was
given a store (without one, the head's frames are all there is, and the view says so).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from collectors.rack import GPUS, gpu_label
from monitor.tui.screens.base import LiveScreen
from monitor.tui.widgets.gpu_detail import detail_lines
from monitor.tui.widgets.history_chart import HistoryChart
from monitor.tui.widgets.nvlink_matrix import link_cell
from monitor.tui.widgets.serving_panel import instance_line
from monitor.view.gpu_history import SERIES, WINDOWS, GpuHistory, history_from_frames, history_from_store
from monitor.view.model import EventView, RackSnapshot
from monitor.view.nvlink import LinkView, NvlinkBuilder
from monitor.view.serving import InstanceView, parse_gpus
from storage.frame import Frame

if TYPE_CHECKING:
    from storage.reader import StoreReader

CEILINGS = {
    "power": 1400.0,
    "temp": 100.0,
    "util": 100.0,
    "clock": 2070.0,
}
"""Chart tops, so a chart's height reads the same from GPU to GPU (GB300 figures). NVLink has none: a
busy GPU moves ~13 of its 1,912 GB/s, which against the ceiling drew no bar at all; its chart scales to
its own peak (the title gives the figures)."""
WINDOW_ORDER = tuple(WINDOWS)


class GpuModel:
    """What the detail view shows (built in a thread)."""

    def __init__(
        self,
        gpu: int,
        history: GpuHistory,
        links: tuple[LinkView, ...],
        instance: InstanceView | None,
        note: str,
    ) -> None:
        """Bundle the parts."""
        self.gpu = gpu
        self.history = history
        self.links = links
        self.instance = instance
        self.note = note


LINKS_PER_ROW = 9
"""Links per row pair of the link table: 5 + 9 x 4 = 41 columns, so it fits the left pane at 80x24."""


def links_text(links: tuple[LinkView, ...], per_row: int = LINKS_PER_ROW) -> Text:
    """Pairs of lines, `per_row` links each: link numbers, then each link's GB/s (DN down, ! climbing,
    · no data)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for first in range(0, len(links), per_row):
        if first:
            text.append("\n")
        row = links[first : first + per_row]
        text.append("link " + "".join(f"{first + k:>4}" for k in range(len(row))) + "\n", style="dim")
        text.append("GB/s ")
        for view in row:
            cell, kind = link_cell(view, "traffic", 4)
            style = {"down": "bold reverse red", "climb": "bold reverse yellow"}.get(kind, "")
            text.append(cell.rjust(4), style=style)
    return text


def events_text(events: tuple[EventView, ...], limit: int = 12) -> Text:
    """The GPU's newest events, newest first."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not events:
        text.append("no events in this window", style="dim")
    for n, ev in enumerate(reversed(events[-limit:])):
        if n:
            text.append("\n")
        text.append(("!" if ev.severe else " ") + ev.text, style="bold red" if ev.severe else "")
    return text


class GpuDetailScreen(LiveScreen):
    """One GPU in depth."""

    view_name = "GPU detail"

    DEFAULT_CSS = """
    GpuDetailScreen #detail-left { width: 1fr; min-width: 43; max-width: 64; scrollbar-size-vertical: 1; }
    GpuDetailScreen #detail-charts { width: 1fr; scrollbar-size-vertical: 1; }
    GpuDetailScreen #detail-left Static { text-wrap: nowrap; text-overflow: ellipsis; }
    """
    """The left pane holds the link table (41 columns) and the scrollbar; lines that do not fit end in
    an ellipsis rather than wrapping into misaligned rows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *LiveScreen.BINDINGS,
        Binding("w", "window", "window", tooltip="Chart window: 5 min, 1 h, 24 h", id="detail-window"),
        Binding("left", "gpu(-1)", "prev GPU", tooltip="The previous GPU", id="detail-prev", show=False),
        Binding("right", "gpu(1)", "next GPU", tooltip="The next GPU", id="detail-next", show=False),
        Binding("question_mark", "help", "help", tooltip="Show this list of keys", id="detail-help"),
    ]

    def __init__(self, gpu: int, store: Path | None = None) -> None:
        """Detail of rack GPU `gpu`; `store` gives 1 h / 24 h charts their data."""
        super().__init__()
        self.gpu = gpu
        self.window = "5m"
        self.store = store
        self._reader: StoreReader | None = None
        self._reader_lock = threading.Lock()
        self._nvlink = NvlinkBuilder()
        self._store_cache: dict[tuple[int, str, int], GpuHistory] = {}

    def compose(self) -> ComposeResult:
        """Now / links / instance / events on the left, charts on the right."""
        yield Static("", id="detail-title", classes="view--line")
        with Horizontal(id="detail-body"):
            with VerticalScroll(id="detail-left"):
                yield Static("", id="detail-now")
                yield Static("", id="detail-links")
                yield Static("", id="detail-instance")
                yield Static("", id="detail-events")
            with VerticalScroll(id="detail-charts"):
                for name, label, unit, _ in SERIES:
                    yield HistoryChart(label, unit, CEILINGS.get(name), id=f"chart-{name}")
        yield Static(
            "w window (5m/1h/24h)  ←→ GPU  esc back  ? help   marks: X xid D down L lost A alert c clocks",
            classes="view--keys",
        )

    def on_resize(self) -> None:
        """Charts share the screen's height: 5 rows each at least (the pane scrolls at 80x24), 12 at most."""
        rows = max(5, min(12, (self.size.height - 2) // len(SERIES)))
        for chart in self.query(HistoryChart):
            chart.styles.height = rows

    def frames_needed(self) -> int:
        """5 minutes of frames at the rack's interval, plus one."""
        return max(self._nvlink.frames_needed(), WINDOWS["5m"] // max(1, self.rack.snapshot.interval_ms) + 1)

    def build_model(self, frames: list[Frame], snapshot: RackSnapshot) -> GpuModel:
        """History, links and instance of the GPU (thread)."""
        gpu, window = self.gpu, self.window
        note = ""
        if window == "5m" or self.store is None:
            history = history_from_frames(gpu, frames, "5m")
            if window != "5m":
                note = f"no store: {window} needs `monitor collect --store` (or replay); showing the head"
        else:
            history = self._from_store(gpu, window, frames[-1].ts_ms if frames else 0)
        links = self._nvlink.build(frames[-self._nvlink.frames_needed() :]).gpu_links(gpu)
        serving = self.rack.serving  # the app's, built with the rack snapshot from the same frames
        instances = serving.instances if serving is not None else ()
        instance = next((i for i in instances if gpu in parse_gpus(i.gpus)), None)
        return GpuModel(gpu, history, links, instance, note)

    def _from_store(self, gpu: int, window: str, until_ms: int) -> GpuHistory:
        """Rollup history, re-read at most once a minute per (GPU, window)."""
        from storage.reader import StoreReader

        key = (gpu, window, until_ms // 60_000)
        cached = self._store_cache.get(key)
        if cached is not None:
            return cached
        with self._reader_lock:
            if self._reader is None:
                self._reader = StoreReader(self.store, self.rack.head)  # type: ignore[arg-type]
            history = history_from_store(self._reader, gpu, window, until_ms)
        self._store_cache = {key: history}
        return history

    def show(self, model: GpuModel, snapshot: RackSnapshot) -> None:
        """Draw the model (a model of another GPU or window, built before a key press, is skipped)."""
        if model.gpu != self.gpu or (model.history.window != self.window and not model.note):
            return
        gpu = snapshot.gpu(model.gpu)
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(f"GPU {gpu.label}", style="bold")
        title.append(f"  window {self.window} from {model.history.source}")
        if model.note:
            title.append(f"  ({model.note})", style="yellow")
        self.query_one("#detail-title", Static).update(title)
        now = Text(no_wrap=True, overflow="ellipsis")
        for n, (line, style) in enumerate(detail_lines(gpu)):
            now.append(("\n" if n else "") + line, style=style)
        self.query_one("#detail-now", Static).update(now)
        self.query_one("#detail-links", Static).update(links_text(model.links))
        inst = Text(no_wrap=True, overflow="ellipsis")
        if model.instance is None:
            inst.append("serves no configured inference instance", style="dim")
        else:
            inst.append(f"instance {model.instance.endpoint} ({model.instance.engine}) on ")
            inst.append(", ".join(gpu_label(g) for g in parse_gpus(model.instance.gpus)) + "\n")
            inst.append_text(instance_line(model.instance))
        self.query_one("#detail-instance", Static).update(inst)
        self.query_one("#detail-events", Static).update(events_text(model.history.events))
        h = model.history
        for name, *_ in SERIES:
            self.query_one(f"#chart-{name}", HistoryChart).set_series(
                h.series[name], h.events, h.since_ms, h.until_ms
            )

    def action_window(self) -> None:
        """Cycle the chart window."""
        self.window = WINDOW_ORDER[(WINDOW_ORDER.index(self.window) + 1) % len(WINDOW_ORDER)]
        self.rack_updated(self.rack.snapshot)

    def action_gpu(self, step: int) -> None:
        """Show the previous / next GPU."""
        held = self.rack.snapshot.layout.gpus or tuple(range(GPUS))  # the GPUs that exist here
        at = held.index(self.gpu) if self.gpu in held else -step
        self.gpu = held[(at + step) % len(held)]
        self.rack.selected = self.gpu
        self.rack_updated(self.rack.snapshot)

    def on_unmount(self) -> None:
        """Close the store reader."""
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
