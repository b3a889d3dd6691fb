"""The events view: a timeline of XIDs, clock-event changes, link down/up, lost GPUs, endpoints and alerts.

A strip on top marks each stretch of the window with its most severe event (the letters of the GPU
charts); below, every event in a table, newest at the top as in the rack view's events panel (the
cursor stays on its event as new ones arrive above it), filterable by kind. Events come from the head, and
from the store when the app was given one (the last 24 h).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from monitor.tui.screens.base import LiveScreen
from monitor.tui.widgets.history_chart import mark_row
from monitor.view.gpu_history import events_of
from monitor.view.model import EVENT_TAGS, EventView, RackSnapshot, clock_text
from storage.frame import Frame
from storage.schemas import EventKind

if TYPE_CHECKING:
    from storage.reader import StoreReader

FILTERS: dict[str, frozenset[str] | None] = {
    "all": None,
    "severe": frozenset(
        {EventKind.XID, EventKind.GPU_LOST, EventKind.LINK_DOWN, EventKind.ALERT, EventKind.RECORDING_STOPPED}
    ),
    "xid": frozenset({EventKind.XID}),
    "links": frozenset({EventKind.LINK_DOWN, EventKind.LINK_UP}),
    "alerts": frozenset({EventKind.ALERT, EventKind.ALERT_CLEARED}),
    "clocks": frozenset({EventKind.CLOCKS_EVENT}),
    "collector": frozenset(
        {
            EventKind.ENDPOINT_DOWN,
            EventKind.ENDPOINT_UP,
            EventKind.COLLECTOR_LATE,
            EventKind.RECORDING_STOPPED,
            EventKind.RECORDING_RESUMED,
        }
    ),
}
"""The kind filters, cycled with f."""
MAX_ROWS = 1000
STORE_WINDOW_MS = 86_400_000


def event_key(ev: EventView) -> str:
    """A row key that is stable across rebuilds."""
    return f"{ev.ts_ms}|{ev.kind}|{ev.gpu}|{ev.link}|{ev.code}|{ev.source}|{ev.detail}"


def event_cells(ev: EventView) -> tuple[str, str, str, str]:
    """(time, kind, where, what) of one event; severe ones start with '!'."""
    tag = EVENT_TAGS.get(ev.kind, ev.kind.upper())
    if ev.kind == EventKind.XID and ev.code is not None:
        tag = f"XID {ev.code}"
    where = ev.where
    if ev.link is not None:
        where += f" L{ev.link}"
    return clock_text(ev.ts_ms), ("!" if ev.severe else " ") + tag, where, ev.describe()


class EventsScreen(LiveScreen):
    """Everything that happened, as a timeline."""

    view_name = "Events timeline"

    BINDINGS: ClassVar[list[BindingType]] = [
        *LiveScreen.BINDINGS,
        Binding("f", "filter", "filter", tooltip="Cycle the kind filter", id="events-filter"),
        Binding("enter", "detail", "GPU detail", tooltip="Open the event's GPU", id="events-detail"),
        Binding("question_mark", "help", "help", tooltip="Show this list of keys", id="events-help"),
    ]

    def __init__(self, store: Path | None = None) -> None:
        """Events from the head, and from `store` when given."""
        super().__init__()
        self.store = store
        self.filter = "all"
        self.events: tuple[EventView, ...] = ()
        self._shown: list[str] = []
        self._reader: StoreReader | None = None
        self._lock = threading.Lock()

    def compose(self) -> ComposeResult:
        """Timeline strip, table, keys."""
        yield Static("", id="events-summary", classes="view--line")
        yield Static("", id="events-strip", classes="view--line")
        table: DataTable[str] = DataTable(id="events-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("f filter  enter GPU detail  esc back  ? help", classes="view--keys")

    def on_mount(self) -> None:
        """The table's columns."""
        table = self.query_one(DataTable)
        for key, label in (("time", "time (UTC)"), ("kind", "kind"), ("where", "where"), ("what", "what")):
            table.add_column(label, key=key)

    def frames_needed(self) -> int:
        """Every frame the head holds."""
        return self.rack.head.capacity

    def build_model(self, frames: list[Frame], snapshot: RackSnapshot) -> tuple[EventView, ...]:
        """Head events (and the store's last 24 h), newest first (thread)."""
        events = [ev for frame in reversed(frames) for ev in reversed(events_of(frame))][:MAX_ROWS]
        if self.store is not None and frames:
            seen = {event_key(e) for e in events}
            for ev in self._store_events(frames[0].ts_ms, frames[-1].ts_ms):
                if event_key(ev) not in seen:
                    events.append(ev)
            events.sort(key=lambda e: e.ts_ms, reverse=True)
        layout = snapshot.layout
        if layout.kind == "board":  # a board host's GPUs are GPU0..GPU7, not rack labels
            events = [dataclasses.replace(e, gpu_name=layout.name(e.gpu)) for e in events]
        return tuple(events[:MAX_ROWS])

    def _store_events(self, head_start: int, until: int) -> list[EventView]:
        from storage.reader import StoreReader

        with self._lock:
            if self._reader is None:
                self._reader = StoreReader(self.store)  # type: ignore[arg-type]
            rel = self._reader.relation("events", until - STORE_WINDOW_MS, head_start)
            rows = self._reader.sql(
                f"SELECT epoch_ms(ts) AS t, kind, gpu, link, code, source, detail FROM {rel} "
                f"ORDER BY t DESC LIMIT {MAX_ROWS}"
            ).to_pylist()
        return [
            EventView(int(r["t"]), r["kind"], r["gpu"], r["link"], r["code"], r["source"], r["detail"])
            for r in rows
        ]

    def show(self, model: tuple[EventView, ...], snapshot: RackSnapshot) -> None:
        """Newest first (the rack view's panel reads the same way); the cursor keeps its event."""
        self.events = model
        kinds = FILTERS[self.filter]
        shown = [e for e in model if kinds is None or e.kind in kinds]
        keys = [event_key(e) for e in shown]
        table: DataTable[str] = self.query_one(DataTable)
        if keys != self._shown:
            # Events are rare: rebuilding the table when one comes (or the filter changes) is cheap.
            on = self._shown[table.cursor_row] if 0 < table.cursor_row < len(self._shown) else None
            with self.app.batch_update():
                table.clear()
                for ev, key in zip(shown, keys, strict=True):
                    table.add_row(*event_cells(ev), key=key)
                self._shown = keys
                if on in keys:
                    table.move_cursor(row=keys.index(on))
        self._summary(model, shown)

    def _summary(self, model: tuple[EventView, ...], shown: list[EventView]) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{len(shown)} of {len(model)} events, newest first  filter {self.filter}", style="bold")
        severe = sum(e.severe for e in shown)
        if severe:
            text.append(f"  {severe} severe (!)", style="bold red")
        self.query_one("#events-summary", Static).update(text, layout=False)
        strip = Text(no_wrap=True, overflow="ellipsis")
        if model:
            until = model[0].ts_ms
            since = min(model[-1].ts_ms, until - 600_000)
            width = max(10, self.size.width - 24)
            strip.append(f"{clock_text(since)} ", style="dim")
            strip.append(mark_row(shown, since, until, width))
            strip.append(f" {clock_text(until)}", style="dim")
        self.query_one("#events-strip", Static).update(strip, layout=False)

    def action_filter(self) -> None:
        """The next kind filter."""
        names = list(FILTERS)
        self.filter = names[(names.index(self.filter) + 1) % len(names)]
        self.show(self.events, self.rack.snapshot)

    def action_detail(self) -> None:
        """Open the GPU of the event under the cursor."""
        table: DataTable[str] = self.query_one(DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or ""
        gpu = key.split("|")[2]
        if gpu not in ("None", ""):
            self.rack.open_gpu_detail(int(gpu))

    def on_unmount(self) -> None:
        """Close the store reader."""
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table has the focus and takes the key) does what the screen's enter does."""
        event.stop()
        self.action_detail()
