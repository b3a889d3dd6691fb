"""The real RackApp under Pilot: keys, selection, LOST and stale cells, help, quit, refresh on data."""

from __future__ import annotations

from observed_app import ObservedRackApp
from rich.console import Console
from textual.widgets import Static
from tui_frames import LOST_GPU, rack_frame

from monitor.tui.help_screen import HelpScreen
from monitor.tui.widgets.event_log import EventLog
from monitor.tui.widgets.gpu_detail import GpuDetail
from monitor.tui.widgets.heatmap import Heatmap
from monitor.tui.widgets.totals import TotalsBar
from storage.head import Head


def heatmap_row(app, tray: int) -> str:
    """The rendered text of a compute tray's row, as the screen shows it."""
    heatmap = app.query_one(Heatmap)
    y = next(i for i, r in enumerate(heatmap.rows) if r.kind == "compute" and r.trays == (tray,))
    return heatmap.render_line(y).text


def rendered(widget) -> str:
    return str(widget.render())


async def test_first_frame_fills_every_panel(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        assert app.frames_applied == 1
        assert app.snapshot.version == head.version
        assert "GPUs ok 67/72 (1 lost, 4 stale)" in rendered(app.query_one(TotalsBar))
        assert "T01.G1" in rendered(app.query_one(GpuDetail))
        assert "XID 79" in rendered(app.query_one(EventLog))
        assert app.screen.has_class("-narrow") and app.screen.has_class("-short")


async def test_metric_keys_switch_the_heatmap(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        assert "28%" in heatmap_row(app, 2)
        await pilot.press("p")
        assert app.metric.name == "power"
        assert "248W" in heatmap_row(app, 2)
        assert app.query_one(Heatmap).border_title == "Power (W)"
        await pilot.press("t", "m", "c", "n", "e")
        assert app.metric.name == "errors"
        assert "15" in heatmap_row(app, 5)  # T05.G1's link 4 counted 15 receive errors
        await pilot.press("u")
        assert app.metric.name == "util"


async def test_arrows_move_the_selection_over_trays_and_modules(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("left", "up")  # clamped at T01.G1
        assert app.selected == 0
        await pilot.press("right", "right", "down")
        assert app.selected == 6  # T02.G3
        assert "[" in heatmap_row(app, 2) and "[" not in heatmap_row(app, 1)
        assert "T02.G3" in rendered(app.query_one(GpuDetail))
        for _ in range(20):
            await pilot.press("down")
        await pilot.press("right", "right", "right")
        assert app.selected == 71  # T18.G4, clamped at the bottom right


async def test_lost_gpu_is_shown_lost(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        assert "LOST" in heatmap_row(app, 16)
        app.selected = LOST_GPU - 1
        await pilot.press("right")
        detail = rendered(app.query_one(GpuDetail))
        assert "T16.G2" in detail and "state LOST" in detail


async def test_stale_tray_is_shown_stale(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        assert heatmap_row(app, 3).split() == ["T03", "?4s", "?4s", "?4s", "?4s"]
        await pilot.press("down", "down")
        assert "state STALE (4s old)" in rendered(app.query_one(GpuDetail))


async def test_help_lists_every_binding_and_closes(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.bindings == app.key_bindings
        console = Console(width=120)
        with console.capture() as capture:
            console.print(app.screen.query_one(Static).content)
        text = capture.get()
        for binding in app.key_bindings:
            assert binding.tooltip in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark", "question_mark")
        assert not isinstance(app.screen, HelpScreen)


async def test_q_quits_and_the_worker_thread_stops(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        assert not app.follow_stopped.is_set()
        await pilot.press("q")
    assert app.return_code == 0
    # The worker wakes from head.wait_for within monitor.tui.follow.WAIT_S and returns; 5 s guards a hang.
    assert app.follow_stopped.wait(timeout=5)


async def test_new_frames_redraw_and_an_unchanged_head_does_not():
    head = Head()
    head.append(rack_frame(0))
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        assert app.frames_applied == 1
        assert app.snapshot.totals.nvlink_tbps is None
        head.append(rack_frame(1, overrides={4: {"util_gpu_pct": 99}}))
        await app.next_snapshot(pilot)
        assert app.frames_applied == 2
        assert app.snapshot.version == 2
        assert app.snapshot.totals.nvlink_tbps is not None
        assert "99%" in heatmap_row(app, 2)
        # A message is posted only for a new head version; the worker is back waiting on the head.
        await pilot.pause()
        assert app.frames_applied == 2


async def test_wide_screen_shows_gauges_and_expanded_switch_trays(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.next_snapshot(pilot)
        assert app.screen.has_class("-wide") and app.screen.has_class("-tall")
        assert app.query_one("#gauges").display
        heatmap = app.query_one(Heatmap)
        assert heatmap.expanded and heatmap.cell_width == 12
        await pilot.resize_terminal(200, 50)
        await pilot.pause()
        # 200 columns: bigger cells, two lines a tray (the switch trays share one row to make room)
        assert app.screen.has_class("-xwide")
        assert heatmap.cell_width == 16 and heatmap.geometry.lines == 2
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert app.screen.has_class("-narrow")
        assert not app.query_one("#gauges").display
        assert not heatmap.expanded
