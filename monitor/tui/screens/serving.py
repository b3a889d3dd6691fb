"""The serving view: every inference instance in a sortable table; enter highlights its GPUs in the rack.

Shows the app's serving view model (monitor.view.serving.ServingBuilder, built with each rack snapshot).
The table updates by diff: cells that changed, rows that came or went; sorting keeps the cursor on the
same instance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from collectors.rack import gpu_label
from monitor.tui.screens.base import LiveScreen
from monitor.view.model import RackSnapshot
from monitor.view.serving import FAULT_NAMES, InstanceView, ServingSnapshot, parse_gpus

COLUMNS: tuple[tuple[str, str], ...] = (
    ("endpoint", "server"),
    ("state", "state"),
    ("tokens_per_s", "tok/s"),
    ("prompt_per_s", "prompt/s"),
    ("running", "run"),
    ("waiting", "wait"),
    ("kv_cache", "KV"),
    ("ttft_p50_s", "TTFT p50"),
    ("ttft_p99_s", "TTFT p99"),
    ("itl_p50_s", "ITL p50"),
    ("queue_p50_s", "queue p50"),  # TTFT's share spent waiting for a slot
    ("cache_hit", "cached"),  # prompt tokens served from the prefix cache
    ("gpus", "GPUs"),
    ("engine", "engine"),
)
"""(InstanceView attribute, header) of each column; the sort key cycles through them."""


WIDTHS = {"endpoint": 12, "state": 8, "tokens_per_s": 7, "prompt_per_s": 9, "gpus": 14, "engine": 6}
"""Column widths (characters); the others fit their header or 7."""


def cell(inst: InstanceView, attr: str, label: Callable[[int], str] = gpu_label) -> str:
    """One cell's text (right-aligned numbers; '--' for unknown); `label` names a GPU (GpuLayout.label)."""
    v = getattr(inst, attr)
    if attr == "state":
        # "part": answered, but a series was NaN or missing (the row's figures cover the rest);
        # a fault (GPU LOST, STALLED) outranks the state: the server answers but does not serve
        return {"ok": "ok", "partial": "part"}.get(inst.status) or inst.status.upper()
    if attr == "gpus":
        gpus = parse_gpus(v)
        if not gpus:
            return v or "--"
        return f"{label(gpus[0])}..{label(gpus[-1])}" if len(gpus) > 1 else label(gpus[0])
    if v is None:
        return "--"
    if attr in ("tokens_per_s", "prompt_per_s"):
        return f"{v:,.0f}"
    if attr in ("kv_cache", "cache_hit"):
        return f"{v * 100:.0f}%"
    if attr in ("ttft_p50_s", "ttft_p99_s", "queue_p50_s"):
        return f"{v:.2f}s"
    if attr == "itl_p50_s":
        return f"{v * 1000:.0f}ms"
    return str(v)


def sort_value(inst: InstanceView, attr: str) -> tuple[int, object]:
    """A sort key that puts unknown values last."""
    v = getattr(inst, attr)
    return (1, 0) if v is None else (0, v)


class ServingScreen(LiveScreen):
    """Every inference instance: tokens/s, queues, KV-cache use, latency percentiles, GPUs."""

    view_name = "Serving instances"

    BINDINGS: ClassVar[list[BindingType]] = [
        *LiveScreen.BINDINGS,
        Binding("o", "sort", "sort", tooltip="Sort by the next column", id="serving-sort"),
        Binding("r", "reverse", "reverse", tooltip="Reverse the sort order", id="serving-reverse"),
        Binding(
            "enter",
            "pick",
            "highlight GPUs",
            tooltip="Highlight the instance's GPUs in the rack",
            id="serving-pick",
        ),
        Binding("question_mark", "help", "help", tooltip="Show this list of keys", id="serving-help"),
    ]

    def __init__(self) -> None:
        """An empty table sorted by tokens/s, highest first."""
        super().__init__()
        self.sort_attr = "tokens_per_s"
        self.descending = True
        self.serving = ServingSnapshot(ts_ms=None)
        self._cells: dict[str, tuple[str, ...]] = {}

    def compose(self) -> ComposeResult:
        """Summary line, table, keys."""
        yield Static("", id="serving-summary", classes="view--line")
        table: DataTable[str] = DataTable(id="serving-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(
            "o sort  r reverse  enter highlight GPUs in the rack  esc back  ? help", classes="view--keys"
        )

    def on_mount(self) -> None:
        """Columns, keyed by attribute."""
        table = self.query_one(DataTable)
        # Fixed widths: auto-sized columns grow after the first rows are drawn, clipping those rows.
        for attr, header in COLUMNS:
            table.add_column(header, key=attr, width=WIDTHS.get(attr, max(len(header), 7)))

    def model_now(self, snapshot: RackSnapshot) -> ServingSnapshot:
        """The app's serving snapshot, built with the rack snapshot from the same frames: drawn at once,
        so the view is never blank while a worker would summarise a minute of frames."""
        return self.rack.serving or ServingSnapshot(ts_ms=None)

    def show(self, model: ServingSnapshot, snapshot: RackSnapshot) -> None:
        """Update the table by diff, then sort."""
        self.serving = model
        table: DataTable[str] = self.query_one(DataTable)
        seen = set()
        label = snapshot.layout.label
        with self.app.batch_update():
            for inst in model.instances:
                seen.add(inst.endpoint)
                cells = tuple(cell(inst, attr, label) for attr, _ in COLUMNS)
                old = self._cells.get(inst.endpoint)
                if old is None:
                    table.add_row(*cells, key=inst.endpoint)
                else:
                    for (attr, _), new, before in zip(COLUMNS, cells, old, strict=True):
                        if new != before:
                            table.update_cell(inst.endpoint, attr, new)
                self._cells[inst.endpoint] = cells
            for gone in set(self._cells) - seen:
                table.remove_row(gone)
                del self._cells[gone]
            self._sort()
        self.query_one("#serving-summary", Static).update(self._summary(model), layout=False)

    def _summary(self, model: ServingSnapshot) -> Text:
        """Counts by status, each fault with its reason, then the sort order."""
        summary = Text(no_wrap=True, overflow="ellipsis")
        counts = model.counts
        total = f"{model.tokens_per_s:,.0f}" if model.tokens_per_s is not None else "--"
        summary.append(f"{len(model.instances)} instances, rack {total} tok/s  ", style="bold")
        summary.append(f"{counts['ok']} ok")
        if counts["partial"]:
            summary.append(f", {counts['partial']} partial", style="bold yellow")
        for status in ("stale", "down", *FAULT_NAMES):
            if counts[status]:
                summary.append(f", {counts[status]} {status.upper()}", style="bold red")
        for inst in model.instances:
            if inst.fault:
                summary.append(f"  ! {inst.endpoint} {inst.fault}: {inst.fault_reason}", style="bold red")
        header = dict(COLUMNS)[self.sort_attr]
        summary.append(f"  sorted by {header} {'high-low' if self.descending else 'low-high'}", style="dim")
        return summary

    def _sort(self) -> None:
        by_name = {i.endpoint: i for i in self.serving.instances}
        attr = self.sort_attr
        table: DataTable[str] = self.query_one(DataTable)
        if not by_name:
            return
        rows = sorted(by_name, key=lambda name: sort_value(by_name[name], attr), reverse=self.descending)
        if self.descending:
            # reverse=True would put unknown values first; keep them last
            known = [n for n in rows if getattr(by_name[n], attr) is not None]
            rows = known + [n for n in rows if getattr(by_name[n], attr) is None]
        order = {name: n for n, name in enumerate(rows)}
        table.sort("endpoint", key=lambda endpoint: order.get(endpoint, len(order)))

    def action_sort(self) -> None:
        """Sort by the next column."""
        attrs = [a for a, _ in COLUMNS]
        self.sort_attr = attrs[(attrs.index(self.sort_attr) + 1) % len(attrs)]
        self.descending = self.sort_attr not in ("endpoint", "state", "gpus", "engine")
        self.show(self.serving, self.rack.snapshot)

    def action_reverse(self) -> None:
        """Reverse the order."""
        self.descending = not self.descending
        self.show(self.serving, self.rack.snapshot)

    def action_pick(self) -> None:
        """Highlight the cursor instance's GPUs in the rack view and go back to it."""
        table: DataTable[str] = self.query_one(DataTable)
        if not table.row_count:
            return
        endpoint = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        inst = next((i for i in self.serving.instances if i.endpoint == endpoint), None)
        if inst is not None:
            self.rack.highlight(inst.endpoint, parse_gpus(inst.gpus))
        self.dismiss(None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table has the focus and takes the key) does what the screen's enter does."""
        event.stop()
        self.action_pick()
