"""What a tick repaints: changed cell spans only, border rows only, held link rates, nothing under a view.

Over SSH every repainted cell costs bytes (bench/bench_pty.py measures them); these tests pin down the
mechanisms that keep a steady rack from resending the screen every second.
"""

from __future__ import annotations

import pytest
from observed_app import ObservedRackApp
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.strip import Strip
from tui_frames import rack_frame

from monitor.tui.screens.nvlink import NvlinkScreen
from monitor.tui.widgets.diff_paint import LinePanel, changed_span
from monitor.tui.widgets.gauge import spark_rows
from monitor.tui.widgets.heatmap import LABEL_WIDTH, Heatmap
from monitor.tui.widgets.totals import TotalsBar
from monitor.view import METRICS_BY_NAME, build_snapshot
from monitor.view.deadband import Deadband, HeldFigures
from storage.head import Head

UTIL = METRICS_BY_NAME["util"]


# -- changed spans ---------------------------------------------------------------------------


def strip(*parts: tuple[str, str]) -> Strip:
    return Strip([Segment(text, Style.parse(style) if style else None) for text, style in parts])


def test_equal_strips_have_no_changed_span():
    assert changed_span(strip(("abc", "bold"), ("def", "")), strip(("abc", "bold"), ("def", ""))) is None
    # Same cells, cut into segments differently: nothing to repaint.
    assert changed_span(strip(("ab", ""), ("cd", "")), strip(("a", ""), ("bcd", ""))) is None


@pytest.mark.parametrize(
    ("old", "new", "span"),
    [
        ((("power 812 W", ""),), (("power 815 W", ""),), (8, 9)),
        ((("a 1 b 2 c", ""),), (("a 9 b 9 c", ""),), (2, 7)),  # first to last change, one span
        ((("red", "red"), (" x", "")), (("red", "blue"), (" x", "")), (0, 3)),  # style alone counts
        ((("12:00:09", ""),), (("12:00:10", ""),), (6, 8)),
        ((("abc", ""),), (("abcdef", ""),), (3, 6)),  # longer: the new cells
        ((("abcdef", ""),), (("abc", ""),), (3, 6)),  # shorter: the cells to blank
        ((("日本", ""),), (("日x ", ""),), (2, 4)),  # a wide character is two cells
    ],
    ids=["digit", "two-changes", "style", "clock", "longer", "shorter", "wide"],
)
def test_changed_span_covers_first_to_last_changed_cell(old, new, span):
    assert changed_span(strip(*old), strip(*new)) == span


# -- held figures ----------------------------------------------------------------------------


def test_a_held_figure_moves_only_past_its_band():
    held = HeldFigures(Deadband(rel=0.05, floor=0.05))
    assert held.hold("l0", 26.0) == 26.0
    assert held.hold("l0", 27.2) == 26.0  # 4.6 %: noise, held
    assert held.hold("l0", 24.9) == 26.0
    assert held.hold("l0", 28.0) == 28.0  # 7.7 %: a real move, followed
    assert held.hold("l0", 0.0) == 0.0  # traffic stopped: shown at once
    assert held.hold("l0", 0.04) == 0.0  # the floor holds figures near zero
    assert held.hold("l0", None) is None  # no value: forgotten ...
    assert held.hold("l0", 0.04) == 0.04  # ... so the next value shows as it is
    held.clear()
    assert held.hold("l0", 5.0) == 5.0


# -- sparkline -------------------------------------------------------------------------------


def test_sparkline_keeps_noise_flat_and_shows_real_moves():
    steady = [82.0, 82.3, 81.9, 82.2, 82.1, 81.8]
    assert spark_rows(steady, 8) == ["  ▄▄▄▄▄▄", "  ██████"]  # 0.5 % of noise: flat, mid-row
    assert spark_rows([5.0], 3) == ["  ▄", "  █"]
    dip = [82.0, 82.0, 60.0, 82.0]
    top, bottom = spark_rows(dip, 4)
    assert top[2] == " " and bottom[2] == "▁" and top[0] == "█"  # the dip reads, at the lowest block
    assert spark_rows(list(range(100)), 5) == spark_rows(list(range(95, 100)), 5)  # newest, one a column
    assert spark_rows([], 3) == ["   ", "   "]
    assert spark_rows([0.0, 0.0], 2) == ["  ", "  "]


# -- widgets under Pilot ---------------------------------------------------------------------


class RecordingPanel(LinePanel):
    """A LinePanel that records what it asks Textual to repaint."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.repaints: list[tuple[Region, ...]] = []

    def refresh(self, *regions: Region, **kwargs):
        if not getattr(self, "_border_only", False):
            self.repaints.append(regions)
        return super().refresh(*regions, **kwargs)


class PanelApp(App[None]):
    CSS = "RecordingPanel { border: round $primary; padding: 0 1; height: auto; }"

    def compose(self) -> ComposeResult:
        yield RecordingPanel(Text("power 812 W\ntemp 61 C\nclocks none"))


async def test_a_line_panel_repaints_only_the_changed_cells():
    app = PanelApp()
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause()
        panel = app.query_one(RecordingPanel)
        panel.repaints.clear()
        assert not panel.show_text(Text("power 812 W\ntemp 61 C\nclocks none"))
        assert panel.repaints == []
        assert panel.show_text(Text("power 812 W\ntemp 62 C\nclocks none"))
        assert panel.repaints == [(Region(6, 1, 1, 1),)]
        await pilot.pause()
        assert panel.render_line(1).text.startswith("temp 62 C")
        panel.repaints.clear()
        assert panel.show_text(Text("power 812 W\ntemp 62 C\nclocks none\nstate OK"))
        assert panel.repaints == [()]  # a line more: the auto height is laid out again


async def test_a_border_text_repaints_its_row_and_only_when_it_changes():
    app = PanelApp()
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause()
        panel = app.query_one(RecordingPanel)
        panel.repaints.clear()
        panel.set_border_text(title="GPU", subtitle="12:00:09Z")
        panel.set_border_text(title="GPU", subtitle="12:00:09Z")
        height, width = panel.size.height, panel.outer_size.width
        top, bottom = Region(-2, -1, width, 1), Region(-2, height, width, 1)
        assert panel.repaints == [(top,), (bottom,)]
        panel.set_border_text(title="GPU", subtitle="12:00:10Z")
        assert panel.repaints[-1] == (bottom,) and len(panel.repaints) == 3
        assert panel.border_subtitle == "12:00:10Z"


class RecordingHeatmap(Heatmap):
    def __init__(self) -> None:
        super().__init__()
        self.repaints: list[Region] = []

    def refresh(self, *regions: Region, **kwargs):
        self.repaints.extend(regions or [Region(0, 0, 0, 0)])
        return super().refresh(*regions, **kwargs)


class HeatmapApp(App[None]):
    def compose(self) -> ComposeResult:
        yield RecordingHeatmap()


async def test_one_gpu_changing_repaints_its_cell_not_the_rack():
    app = HeatmapApp()
    async with app.run_test(size=(80, 40)) as pilot:
        heatmap = app.query_one(RecordingHeatmap)
        heatmap.update_view(build_snapshot([rack_frame(0), rack_frame(1)]), UTIL, 0)
        await pilot.pause()
        heatmap.repaints.clear()
        # Rack GPU 6 is tray 2 module 3; only its util changes.
        changed = heatmap.update_view(
            build_snapshot([rack_frame(0), rack_frame(1, overrides={6: {"util_gpu_pct": 3}})]), UTIL, 0
        )
        assert changed == [next(y for y, r in enumerate(heatmap.rows) if r.trays == (2,))]
        [region] = heatmap.repaints
        cell = heatmap.cell_width
        assert region.y == changed[0] and region.height == 1
        assert LABEL_WIDTH + 2 * cell <= region.x and region.right <= LABEL_WIDTH + 3 * cell


async def test_frames_under_a_view_leave_the_rack_alone_until_it_returns():
    head = Head()
    head.append(rack_frame(0))
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("l")
        while not isinstance(app.screen, NvlinkScreen):
            await pilot.pause()
        before = app.query_one(TotalsBar).text.plain
        head.append(rack_frame(1))
        await app.next_snapshot(pilot)
        assert app.snapshot.totals.nvlink_tbps is not None
        assert app.query_one(TotalsBar).text.plain == before  # hidden: not redrawn
        await pilot.press("escape")
        await pilot.pause()
        assert "NVLink --" not in app.query_one(TotalsBar).text.plain
        assert app.query_one(TotalsBar).text.plain != before
