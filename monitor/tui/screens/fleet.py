"""The fleet screen: one row per rack, worst first; enter opens the rack in the rack views.

Shows FleetRows (monitor.view.fleet_row) that the app's fleet worker builds off the event loop. The
table updates by diff (cells that changed; rows only come with the fleet), `order` is a reactive whose
watcher re-sorts, and the cursor stays on the same rack when the order changes. Each row's state is a
word as well as a colour (CRIT / warn / ok), so it reads without colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Static

from monitor.view.fleet_row import SORTS, FleetRow, Health, sorted_rows
from monitor.view.model import clock_text
from storage.rack_total import RackTotal

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("rack", "rack", 8),
    ("state", "state", 5),
    ("gpus", "GPUs", 5),
    ("power", "kW", 10),
    ("tokens", "tok/s", 12),
    ("hottest", "hottest", 10),
    ("links", "lnk dn", 6),
    ("endpoints", "srv dn", 6),
    ("alerts", "alerts", 6),
    ("problem", "worst problem", 60),
)
"""(key, header, width) of each column, fixed so a later, wider value is never clipped. Up to alerts they
fit 80 columns (one blank between columns); the worst problem is also on the summary line."""

STATE_TEXT = {Health.CRITICAL: "CRIT", Health.WARNING: "warn", Health.WAITING: "...", Health.OK: "ok"}
STATE_STYLE = {Health.CRITICAL: "bold red", Health.WARNING: "yellow", Health.WAITING: "dim", Health.OK: ""}


def _total(total: RackTotal, text: str) -> str:
    """`text`, then '71/72' when the total does not cover the whole rack (storage.rack_total's rule)."""
    if total.value is None:
        return "--"
    return text if total.whole else f"{text} {total.covered}/{total.of}"


def row_cells(row: FleetRow) -> tuple[str, ...]:
    """One row's cell texts, in COLUMNS order."""
    hottest = f"{row.hottest_c:.0f}C {row.hottest_at}" if row.hottest_c is not None else "--"
    endpoints = f"{row.endpoints_down}/{row.endpoints}" if row.endpoints else "--"
    problem = row.worst.text if row.worst is not None else ("waiting for data" if row.ts_ms is None else "")
    if row.error:
        problem = row.error
    if row.problems > 1:
        problem = f"{problem} (+{row.problems - 1})"
    return (
        row.name,
        STATE_TEXT[row.health],
        f"{row.gpus_ok}/{row.gpus}" if row.ts_ms is not None else "--",
        _total(row.power_kw, f"{row.power_kw.value or 0:.1f}"),
        _total(row.tokens, f"{(row.tokens.value or 0) / 1000:,.0f}k"),
        hottest,
        str(row.links_down) if row.ts_ms is not None else "--",
        endpoints,
        "-" if row.partial else str(row.alerts),
        problem,
    )


class FleetScreen(Screen[None]):
    """Every rack of the fleet, one row each: enter opens the rack, o cycles the order."""

    DEFAULT_CSS = """
    FleetScreen { layout: vertical; }
    FleetScreen #fleet-summary { height: 1; background: $panel; padding: 0 1; }
    FleetScreen #fleet-table { height: 1fr; }
    FleetScreen #fleet-keys { height: 1; color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "o",
            "cycle_order",
            "sort",
            tooltip="Sort by the next column (worst first by default)",
            id="fleet-sort",
        ),
        Binding("enter", "open_rack", "open rack", tooltip="Open the rack under the cursor", id="fleet-open"),
        Binding("question_mark", "help", "help", tooltip="Show this list of keys", id="fleet-help"),
        Binding("q", "app.quit", "quit", tooltip="Quit rack-monitor", id="fleet-quit"),
    ]

    order: reactive[str] = reactive("worst")
    """The current order, a key of monitor.view.fleet_row.SORTS; its watcher re-sorts the table."""

    class RackChosen(Message):
        """The operator picked a rack to open."""

        def __init__(self, name: str) -> None:
            """Carry the rack's name."""
            super().__init__()
            self.name = name

    def __init__(self, fleet_name: str, racks: Mapping[str, int]) -> None:
        """A table with one waiting row per rack (rack name -> its GPU count)."""
        super().__init__(name="fleet")
        self.fleet_name = fleet_name
        self.rows: dict[str, FleetRow] = {name: FleetRow.waiting(name, gpus) for name, gpus in racks.items()}
        self._cells: dict[str, tuple[str, ...]] = {}
        self._order: list[str] = []

    def compose(self) -> ComposeResult:
        """Summary line, table, keys."""
        yield Static("", id="fleet-summary")
        yield DataTable(id="fleet-table", cursor_type="row", zebra_stripes=True, cell_padding=0)
        yield Static("enter open rack  o sort  esc (in a rack) back here  ? help  q quit", id="fleet-keys")

    def on_mount(self) -> None:
        """Columns and one row per rack."""
        table: DataTable[Text] = self.query_one(DataTable)
        for key, header, width in COLUMNS:
            table.add_column(header, key=key, width=width + 1)  # + 1: the blank between columns
        self.show(list(self.rows.values()))

    def keep(self, rows: Sequence[FleetRow]) -> None:
        """Hold the newest rows without drawing them (the screen is hidden; it draws them when it returns)."""
        for row in rows:
            self.rows[row.name] = row

    def on_screen_resume(self) -> None:
        """Catch up with the rows kept while a rack was open."""
        self.show(list(self.rows.values()))

    def show(self, rows: Sequence[FleetRow]) -> None:
        """Update the rows that changed, then re-sort if the order moved."""
        self.keep(rows)
        if not self.is_mounted:
            return
        try:
            table: DataTable[Text] = self.query_one(DataTable)
        except NoMatches:  # the app is closing: rows posted as its widgets went
            return
        with self.app.batch_update():
            for row in rows:
                cells = row_cells(row)
                style = STATE_STYLE[row.health]
                old = self._cells.get(row.name)
                if old is None:
                    table.add_row(*(Text(c, style=style) for c in cells), key=row.name)
                else:
                    restyle = old[1] != cells[1]  # the state changed: every cell takes the new colour
                    for (key, _, _), new, before in zip(COLUMNS, cells, old, strict=True):
                        if new != before or restyle:
                            table.update_cell(row.name, key, Text(new, style=style))
                self._cells[row.name] = cells
            self._sort()
        self.query_one("#fleet-summary", Static).update(self._summary(), layout=False)

    def _summary(self) -> Text:
        """'rack07 CRIT: T18.G3 GPU lost · hall-b: 16 racks, 1 CRIT, 2 warn · 1,151/1,152 GPUs ok · data at
        12:00:01 · sorted by worst': the worst rack's problem first, so 80 columns still show it."""
        rows = list(self.rows.values())
        text = Text(no_wrap=True, overflow="ellipsis")
        worst = sorted_rows(rows, "worst")[0] if rows else None
        if worst is not None and worst.worst is not None:
            label = f"{worst.name} {STATE_TEXT[worst.health]}: {worst.worst.text}"
            text.append(label, style=STATE_STYLE[worst.health] or "bold")
            text.append(" · ")
        text.append(f"{self.fleet_name}: {len(rows)} racks", style="bold")
        for health in (Health.CRITICAL, Health.WARNING):
            n = sum(r.health is health for r in rows)
            if n:
                text.append(f", {n} {STATE_TEXT[health]}", style=STATE_STYLE[health])
        ok = sum(r.gpus_ok for r in rows if r.ts_ms is not None)
        gpus = sum(r.gpus for r in rows)
        text.append(f" · {ok:,}/{gpus:,} GPUs ok")
        newest = max((r.ts_ms for r in rows if r.ts_ms is not None), default=None)
        if newest is not None:
            text.append(f" · data at {clock_text(newest)}", style="dim")
        text.append(f" · sorted by {self.order}", style="dim")
        return text

    def _sort(self) -> None:
        order = [r.name for r in sorted_rows(list(self.rows.values()), self.order)]
        if order == self._order:
            return
        self._order = order
        position = {name: n for n, name in enumerate(order)}
        table: DataTable[Text] = self.query_one(DataTable)
        # On the top row the cursor stays on the top row (the worst rack, by default); moved elsewhere
        # by the operator, it stays on the rack they chose.
        chosen = self.cursor_rack() if table.cursor_row > 0 else None
        table.sort("rack", key=lambda cell: position.get(cell.plain, len(position)))
        if chosen is not None:
            table.move_cursor(row=table.get_row_index(chosen), animate=False)

    def watch_order(self) -> None:
        """Re-sort in the new order."""
        if self.is_mounted:
            self._order = []
            self._sort()
            self.query_one("#fleet-summary", Static).update(self._summary(), layout=False)

    def cursor_rack(self) -> str | None:
        """The name of the rack under the cursor (None in an empty table)."""
        table: DataTable[Text] = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def sorted_names(self) -> list[str]:
        """The racks in the table's order, top first."""
        return list(self._order)

    def action_cycle_order(self) -> None:
        """Sort by the next order (worst, name, power, tokens/s, hottest)."""
        names = list(SORTS)
        self.order = names[(names.index(self.order) + 1) % len(names)]

    def action_help(self) -> None:
        """List the fleet screen's keys."""
        from monitor.tui.help_screen import HelpScreen

        keys = [b for b in self.BINDINGS if isinstance(b, Binding)]
        back = Binding(
            "escape", "fleet", "back to the fleet", tooltip="From a rack's views, back to this screen"
        )
        self.app.push_screen(HelpScreen([*keys, back]))

    def action_open_rack(self) -> None:
        """Open the rack under the cursor."""
        name = self.cursor_rack()
        if name is not None:
            self.post_message(self.RackChosen(name))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table has the focus and takes the key) opens that rack."""
        event.stop()
        self.action_open_rack()
