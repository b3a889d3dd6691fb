"""The group skew view: per inference instance and per tray, the spread of clocks, power and util, and
the stragglers (GPUs far from their group's median)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from monitor.tui.screens.base import LiveScreen
from monitor.view.model import RackSnapshot
from monitor.view.skew import GroupSkew, RackSkew, Spread, rack_skew

COLUMNS = (
    ("group", "group"),
    ("stragglers", "stragglers"),  # second: what the view is for stays on an 80-column screen
    ("gpus", "GPUs"),
    ("clock", "SM MHz lo-hi (spread)"),
    ("power", "power W lo-hi (spread)"),
    ("util", "util % lo-hi (spread)"),
)


def spread_cell(s: Spread) -> str:
    """'1890-1965 (75)', or '--' with no readings."""
    if s.low is None or s.high is None:
        return "--"
    return f"{s.low:.0f}-{s.high:.0f} ({s.high - s.low:.0f})"


def group_cells(g: GroupSkew) -> tuple[str, ...]:
    """One group's row; stragglers are spelled out (and marked '!')."""
    gpus = g.span
    if g.missing:
        gpus += f" ({g.missing} no data)"
    strag = "; ".join(s.text for s in g.stragglers)
    return (
        ("! " if g.stragglers else "  ") + g.name,
        strag or "none",
        gpus,
        spread_cell(g.spread("clock")),
        spread_cell(g.spread("power")),
        spread_cell(g.spread("util")),
    )


def summary_text(model: RackSkew) -> Text:
    """'18 groups  ! stragglers: T05.G3  72 single-GPU instances folded (no spread)'."""
    stragglers = sorted({(s.gpu, s.label) for g in model.groups for s in g.stragglers})
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{len(model.groups)} groups  ", style="bold")
    if stragglers:
        text.append(f"! stragglers: {', '.join(label for _, label in stragglers)}", style="bold red")
    else:
        text.append("no stragglers")
    if model.folded:
        instances = "instance" if model.folded == 1 else "instances"
        # one GPU has no spread; its tray's row compares it with its peers
        text.append(f"  {model.folded} single-GPU {instances} folded (no spread)", style="dim")
    return text


class SkewScreen(LiveScreen):
    """Spread within groups, stragglers called out."""

    view_name = "Group skew and stragglers"

    BINDINGS: ClassVar[list[BindingType]] = [
        *LiveScreen.BINDINGS,
        Binding(
            "enter", "detail", "GPU detail", tooltip="Open the group's first straggler", id="skew-detail"
        ),
        Binding("question_mark", "help", "help", tooltip="Show this list of keys", id="skew-help"),
    ]

    def __init__(self) -> None:
        """An empty table."""
        super().__init__()
        self.groups: tuple[GroupSkew, ...] = ()
        self._cells: dict[str, tuple[str, ...]] = {}

    def compose(self) -> ComposeResult:
        """Summary, table, keys."""
        yield Static("", id="skew-summary", classes="view--line")
        yield DataTable(id="skew-table", cursor_type="row", zebra_stripes=True)
        yield Static("enter GPU detail of the straggler  esc back  ? help", classes="view--keys")

    def on_mount(self) -> None:
        """The table's columns."""
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)

    def model_now(self, snapshot: RackSnapshot) -> RackSkew:
        """Every group's skew from the rack snapshot and the app's serving snapshot (cheap: drawn at once)."""
        return rack_skew(snapshot, self.rack.serving)

    def show(self, model: RackSkew, snapshot: RackSnapshot) -> None:
        """Update the table by diff; rebuild only when the groups' order changed."""
        self.groups = groups = model.groups
        table: DataTable[str] = self.query_one(DataTable)
        names = [g.name for g in groups]
        with self.app.batch_update():
            if names != list(self._cells):
                table.clear()
                self._cells = {}
            for g in groups:
                cells = group_cells(g)
                old = self._cells.get(g.name)
                if old is None:
                    table.add_row(*cells, key=g.name)
                else:
                    for (key, _), new, before in zip(COLUMNS, cells, old, strict=True):
                        if new != before:
                            table.update_cell(g.name, key, new)
                self._cells[g.name] = cells
        self.query_one("#skew-summary", Static).update(summary_text(model), layout=False)

    def action_detail(self) -> None:
        """The GPU detail of the cursor group's first straggler (or first GPU)."""
        table: DataTable[str] = self.query_one(DataTable)
        if not table.row_count:
            return
        name = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        group = next((g for g in self.groups if g.name == name), None)
        if group is not None and group.gpus:
            self.rack.open_gpu_detail(group.stragglers[0].gpu if group.stragglers else group.gpus[0])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table has the focus and takes the key) does what the screen's enter does."""
        event.stop()
        self.action_detail()
