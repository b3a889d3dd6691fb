"""The views over the rack view, under Pilot: every key, the palette, the keymap, the data each view shows."""

from __future__ import annotations

import asyncio

import pytest
from observed_app import ObservedRackApp
from textual.command import CommandPalette
from textual.widgets import DataTable, Static
from tui_frames import LOST_GPU, rack_frame
from view_frames import sim_fault, sim_head

from monitor.tui.help_screen import HelpScreen
from monitor.tui.screens.events import EventsScreen, event_key
from monitor.tui.screens.gpu_detail import GpuDetailScreen
from monitor.tui.screens.nvlink import NvlinkScreen
from monitor.tui.screens.serving import ServingScreen
from monitor.tui.screens.skew import SkewScreen
from monitor.tui.widgets.alert_bar import AlertBar
from monitor.tui.widgets.diff_paint import LinePanel
from monitor.tui.widgets.heatmap import Heatmap
from monitor.tui.widgets.history_chart import HistoryChart
from monitor.tui.widgets.nvlink_matrix import NvlinkMatrixView
from storage.head import Head
from storage.schemas import EventKind


async def shown(app, pilot, screen_type, models: int = 1):
    """Wait until the current screen is `screen_type` and has drawn `models` models."""
    for _ in range(400):
        await pilot.pause()
        if isinstance(app.screen, screen_type) and app.screen.models_shown >= models:
            return app.screen
        await asyncio.sleep(0.01)  # the model is built in a thread worker
    raise AssertionError(f"{screen_type.__name__} never drew a model (screen: {type(app.screen).__name__})")


def text(widget) -> str:
    return str(widget.render())


def matrix_rows(screen) -> list[str]:
    view = screen.query_one(NvlinkMatrixView)
    return [view.render_line(y).text for y in range(view.size.height)]


async def test_every_view_opens_by_key_and_escape_returns_to_the_rack(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        for key, screen_type in (
            ("l", NvlinkScreen),
            ("s", ServingScreen),
            ("enter", GpuDetailScreen),
            ("v", EventsScreen),
            ("g", SkewScreen),
        ):
            await pilot.press(key)
            await shown(app, pilot, screen_type)
            await pilot.press("escape")
            await pilot.pause()
            assert len(app.screen_stack) == 1, key


async def test_nvlink_matrix_marks_down_links_and_pages_at_80x24():
    frames = [
        rack_frame(t, link_overrides={(10, 4): {"rx_errors": 3 * t}, (70, 9): {"state": 0} if t > 2 else {}})
        for t in range(6)
    ]
    head = Head()
    for f in frames:
        head.append(f)
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("l")
        screen = await shown(app, pilot, NvlinkScreen)
        rows = matrix_rows(screen)
        assert rows[0].split()[:3] == ["GPU", "\\", "L"] and rows[0].split()[-1] == "17"
        assert [r.split()[0] for r in rows[-3:]] == ["TB/s", "down", "climb"]
        assert rows[-2].split()[1:] == ["."] * 9 + ["1"] + ["."] * 8  # link 9 = switch chip 9: one down
        assert rows[-1].split()[5] == "1"  # link 4 of T03.G3 climbed in 5 samples
        assert len(rows) == 24 - 3  # summary, detail and key lines around it
        await pilot.press("e")
        t03 = next(r for r in matrix_rows(screen) if "T03.G3" in r)
        assert t03.startswith("!T03.G3") and t03.split()[5] == "!15"
        assert not any("T18.G3" in r for r in matrix_rows(screen))
        await pilot.press(*["pagedown"] * 5)
        t18 = next(r for r in matrix_rows(screen) if "T18.G3" in r)
        assert t18.startswith("!T18.G3") and t18.split()[10] == "DN"
        view = screen.query_one(NvlinkMatrixView)
        assert view.gpu == 71 and view.top == 72 - view.body_rows
        await pilot.press("up", "right")
        assert app.selected == 70
        detail = text(screen.query_one("#nvlink-detail", LinePanel))
        assert "T18.G3 L1 -> switch tray 1 chip 2" in detail


async def test_nvlink_flap_is_flagged_climbing_before_it_goes_down():
    fault = sim_fault("nvlink-flap")
    app = ObservedRackApp(sim_head("nvlink-flap", 30), interval=0)
    async with app.run_test(size=(200, 50)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("l")
        screen = await shown(app, pilot, NvlinkScreen)
        view = screen.matrix.link(fault.gpu, fault.link)
        assert view.flagged and not view.down
        assert screen.matrix.flagged == 1 and screen.matrix.columns[fault.link].flagged == 1
        assert "CLIMBING" not in text(screen.query_one("#nvlink-detail", LinePanel))
        for _ in range(fault.gpu):
            await pilot.press("down")
        for _ in range(fault.link):
            await pilot.press("right")
        assert "CLIMBING" in text(screen.query_one("#nvlink-detail", LinePanel))


async def test_serving_table_sorts_and_enter_highlights_the_instance_gpus():
    app = ObservedRackApp(sim_head("straggler", 15), interval=0)
    async with app.run_test(size=(120, 30)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("s")
        screen = await shown(app, pilot, ServingScreen)
        table = screen.query_one(DataTable)
        assert table.row_count == 18
        tokens = [float(table.get_row_at(r)[2].replace(",", "")) for r in range(table.row_count)]
        assert tokens == sorted(tokens, reverse=True)
        slowest = table.get_row_at(table.row_count - 1)[0]
        await pilot.press("r")
        assert table.get_row_at(0)[0] == slowest
        await pilot.press("o", "o", "o")  # tokens -> prompt -> running -> waiting
        assert screen.sort_attr == "waiting"
        await pilot.press("r", "enter")
        await pilot.pause()
        assert len(app.screen_stack) == 1
        heatmap = app.query_one(Heatmap)
        picked = table.get_row_at(0)[0]
        assert picked in heatmap.border_title
        assert len(heatmap.highlighted) == 4
        marked = [y for y in range(len(heatmap.rows)) if "*" in heatmap.render_line(y).text]
        assert len(marked) == 1  # one tray's row carries the instance's four GPUs
        await pilot.press("escape")
        assert not heatmap.highlighted and "*" not in heatmap.border_title


async def test_gpu_detail_charts_mark_events_and_windows_cycle(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(200, 50)) as pilot:
        await app.next_snapshot(pilot)
        app.open_gpu_detail(LOST_GPU)
        screen = await shown(app, pilot, GpuDetailScreen)
        assert "state LOST" in text(screen.query_one("#detail-now", Static))
        assert "XID 79" in text(screen.query_one("#detail-events", Static))
        chart = screen.query_one("#chart-power", HistoryChart)
        rows = [chart.render_line(y).text for y in range(chart.size.height)]
        assert rows[0].startswith("Power (W)  now --")  # lost: no reading now
        assert "X" in rows[-1]  # the XID is marked under the chart
        await pilot.press("w")
        screen = await shown(app, pilot, GpuDetailScreen, models=2)
        assert "no store: 1h needs" in text(screen.query_one("#detail-title", Static))
        await pilot.press("right")
        await shown(app, pilot, GpuDetailScreen, models=3)
        assert screen.gpu == LOST_GPU + 1 and app.selected == LOST_GPU + 1


async def test_events_timeline_filters_and_opens_the_gpu(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(120, 30)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("v")
        screen = await shown(app, pilot, EventsScreen)
        table = screen.query_one(DataTable)
        kinds = [table.get_row_at(r)[1].strip() for r in range(table.row_count)]
        assert kinds == ["CLOCKS", "!GPU LOST", "!XID 79"]  # newest first...
        panel = [event_key(e) for e in app.snapshot.events]  # ...in the same order as the rack's panel
        rows = [table.coordinate_to_cell_key((r, 0)).row_key.value for r in range(table.row_count)]
        assert rows == panel
        await pilot.press("f")  # severe only
        assert table.row_count == 2 and screen.filter == "severe"
        assert "X" in text(screen.query_one("#events-strip", Static))
        await pilot.press("up", "enter")
        detail = await shown(app, pilot, GpuDetailScreen)
        assert detail.gpu == LOST_GPU


async def test_a_new_event_arrives_on_top_and_the_cursor_keeps_its_event(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(120, 30)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("v")
        screen = await shown(app, pilot, EventsScreen)
        table = screen.query_one(DataTable)
        await pilot.press("down")
        on = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        alert = {"kind": EventKind.ALERT, "gpu": 5, "code": 1, "source": None, "detail": "3 C to slowdown"}
        head.append(rack_frame(6, events=[alert]))
        await shown(app, pilot, EventsScreen, models=2)
        assert table.get_row_at(0)[1].strip() == "!ALERT"  # the newest, on top
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == on
        assert table.cursor_row == 2


async def test_skew_calls_out_the_straggler():
    fault = sim_fault("straggler")
    app = ObservedRackApp(sim_head("straggler", 15), interval=0)
    async with app.run_test(size=(160, 40)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("g")
        screen = await shown(app, pilot, SkewScreen)
        assert f"! stragglers: {app.snapshot.gpu(fault.gpu).label}" in text(
            screen.query_one("#skew-summary", Static)
        )
        table = screen.query_one(DataTable)
        first = table.get_row_at(0)
        assert first[0].startswith("! vllm-") and app.snapshot.gpu(fault.gpu).label in first[1]
        await pilot.press("enter")
        detail = await shown(app, pilot, GpuDetailScreen)
        assert detail.gpu == fault.gpu


async def test_palette_finds_views_metrics_and_gpus_by_label_index_and_uuid(head):
    app = ObservedRackApp(head, interval=0)
    async with app.run_test(size=(120, 30)) as pilot:
        await app.next_snapshot(pilot)
        uuid = app.snapshot.gpu(42).uuid
        for query, check in (
            ("nvlink matrix", lambda: isinstance(app.screen, NvlinkScreen)),
            ("metric power", lambda: app.metric.name == "power"),
            ("T16.G2", lambda: isinstance(app.screen, GpuDetailScreen) and app.screen.gpu == LOST_GPU),
            ("33", lambda: isinstance(app.screen, GpuDetailScreen) and app.screen.gpu == 33),
            (uuid, lambda: isinstance(app.screen, GpuDetailScreen) and app.screen.gpu == 42),
        ):
            app.action_view("rack")
            await pilot.press("colon")
            await pilot.pause()
            assert CommandPalette.is_open(app)
            await pilot.press(*query)
            palette = app.screen
            for _ in range(200):  # the palette searches in a worker; wait for its first hit
                await pilot.pause()
                if palette.query("CommandList").first().option_count:
                    break
                await asyncio.sleep(0.01)
            await pilot.press("enter")
            await pilot.pause()
            assert check(), query


async def test_keys_remap_through_the_keymap_and_help_lists_every_key(head):
    app = ObservedRackApp(head, interval=0, keymap={"nvlink-view": "L", "nvlink-errors": "x"})
    async with app.run_test(size=(80, 24)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("l")
        assert len(app.screen_stack) == 1
        await pilot.press("L")
        screen = await shown(app, pilot, NvlinkScreen)
        await pilot.press("x")
        assert screen.mode == "errors"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        ids = {b.id for b in app.screen.bindings}
        assert {"nvlink-errors", "nvlink-traffic", "back", "nvlink-view", "quit", "palette"} <= ids


def test_an_unknown_key_action_is_refused(head):
    with pytest.raises(ValueError, match="unknown key action"):
        ObservedRackApp(head, keymap={"warp-drive": "w"})


async def test_alerts_in_the_frames_show_in_the_alert_bar_and_clear():
    head = Head()
    alert = {"kind": EventKind.ALERT, "gpu": 5, "code": 1, "source": None, "detail": "3 C to slowdown"}
    # The GPU's row reads what the alert says: the bar quotes the row's sample (the one its cell shows).
    head.append(rack_frame(0, events=[alert], overrides={5: {"temp_margin_c": 3, "temp_gpu_c": 84}}))
    app = ObservedRackApp(head, interval=0, bell=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await app.next_snapshot(pilot)
        bar = app.query_one(AlertBar)
        assert bar.display and "1 ALERT  T02.G2 temp_margin: 3 C to slowdown (GPU at 84 C)" in text(bar)
        head.append(rack_frame(1, events=[{**alert, "kind": EventKind.ALERT_CLEARED}]))
        await app.next_snapshot(pilot)
        assert not bar.display
