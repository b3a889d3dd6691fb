"""The serving, events, skew and GPU detail views at 80x24 and 200x50, on the simulated rack losing a GPU
(with its alert showing), read off the screen as the terminal would show it.

The lost GPU and the server on it come from the simulator's ground truth; event order from the events'
own timestamps; the link table and chart titles are checked against the characters on screen.
"""

from __future__ import annotations

import re

import pytest
from live_rack import LiveRack, until
from observed_app import ObservedRackApp
from textual.widgets import DataTable

from collectors.rack import LINKS_PER_GPU, gpu_label
from collectors.sim.frames import endpoint_name
from monitor.tui.screens.events import EventsScreen
from monitor.tui.screens.gpu_detail import GpuDetailScreen
from monitor.tui.screens.serving import ServingScreen
from monitor.tui.screens.skew import SkewScreen
from monitor.tui.widgets.alert_bar import AlertBar
from monitor.tui.widgets.history_chart import HistoryChart

SIZES = [(80, 24), (200, 50)]
TICKS = 16
PARTIAL_BLOCKS = "▁▂▃▄▅▆▇"
"""Glyphs of a sparkline (or of a scrollbar thumb's ends): none belongs on a table view."""
TITLE = re.compile(r"^.+ \(.+\)(  now \S+  min \S+  max \S+| now \S+ min \S+ max \S+| \S+ \(\S+\.\.\S+\))$")
"""A chart title in one of its three lengths, whole (not cut)."""


def screen_lines(app) -> list[str]:
    """The current screen as the terminal shows it, one string per row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


@pytest.fixture
def live():
    rack = LiveRack("gpu-lost")
    yield rack
    rack.stop()


async def lost_rack(live: LiveRack, size: tuple[int, int]):
    """The app on the rack after its GPU is lost, with the alert bar showing; (app, pilot context)."""
    app = ObservedRackApp(live.head, interval=0)
    return app, app.run_test(size=size)


async def settle(live: LiveRack, app, pilot) -> None:
    for _ in range(TICKS):
        await live.tick()
    await until(pilot, lambda: app.snapshot.version == live.head.version, "the last frame shown")
    await until(pilot, lambda: app.query_one(AlertBar).display, "an alert on the bar")


async def opened(app, pilot, key: str, screen_type):
    await pilot.press(key)
    await until(
        pilot,
        lambda: isinstance(app.screen, screen_type) and app.screen.models_shown >= 1,
        f"{screen_type.__name__} drawn",
    )
    await pilot.pause()
    return app.screen


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_serving_is_drawn_at_once_and_names_the_lost_gpus_server(live, size):
    lost = live.rack.scenario.fault.gpu
    victim = endpoint_name(next(i for i in live.rack.workload.instances if lost in i.gpus))
    app, ctx = await lost_rack(live, size)
    async with ctx as pilot:
        await settle(live, app, pilot)
        await pilot.press("s")
        screen = app.screen
        assert isinstance(screen, ServingScreen)
        # drawn from the app's own serving snapshot as the view opens (the same object: no second build
        # of a minute of frames in a worker, which left the view blank for seconds)
        assert screen.models_shown == 1 and screen.serving is app.serving
        table = screen.query_one(DataTable)
        assert table.row_count == len(live.rack.workload.instances)
        row = table.get_row(victim)
        assert row[1] == "GPU LOST"
        assert row[-2] == gpu_label(lost)  # the lone GPU by its label, not its index
        lines = screen_lines(app)
        assert f"1 GPU LOST  ! {victim} gpu lost: {gpu_label(lost)} lost" in lines[0] or size[0] < 120
        assert "1 GPU LOST" in lines[0]
        assert not [line for line in lines if any(c in line for c in PARTIAL_BLOCKS)], lines


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_events_list_newest_first_as_the_panel_says(live, size):
    app, ctx = await lost_rack(live, size)
    async with ctx as pilot:
        await settle(live, app, pilot)
        screen = await opened(app, pilot, "v", EventsScreen)
        times = [ev.ts_ms for ev in screen.events]
        assert times == sorted(times, reverse=True) and len(times) >= 2
        table = screen.query_one(DataTable)
        first = table.coordinate_to_cell_key((0, 0)).row_key.value
        assert first.startswith(f"{times[0]}|")
        lines = screen_lines(app)
        assert "newest first" in lines[0]
        assert not [line for line in lines if any(c in line for c in PARTIAL_BLOCKS)], lines


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_skew_folds_single_gpu_instances_and_shows_the_stragglers_column(live, size):
    app, ctx = await lost_rack(live, size)
    async with ctx as pilot:
        await settle(live, app, pilot)
        screen = await opened(app, pilot, "g", SkewScreen)
        singles = sum(len(i.gpus) == 1 for i in live.rack.workload.instances)
        assert singles == 72  # the demo's rack: one GPU per server
        table = screen.query_one(DataTable)
        assert table.row_count == 18  # the trays; one GPU has no spread
        lines = screen_lines(app)
        assert f"18 groups  no stragglers  {singles} single-GPU instances folded" in lines[0]
        assert "stragglers" in lines[1].split()  # the column's header is on screen at every width
        assert not [line for line in lines if any(c in line for c in PARTIAL_BLOCKS)], lines


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_gpu_detail_link_table_and_chart_titles_fit(live, size):
    app, ctx = await lost_rack(live, size)
    async with ctx as pilot:
        await settle(live, app, pilot)
        screen = await opened(app, pilot, "enter", GpuDetailScreen)
        lines = screen_lines(app)
        pairs = [(n, line) for n, line in enumerate(lines) if re.search(r"\blink\s+\d", line)]
        numbers = []
        for n, line in pairs:
            found = re.search(r"link( +\d+)+", line)
            assert found is not None
            start, head = found.start(), found.group(0)
            gbps = lines[n + 1][start : start + len(head)]
            assert gbps.startswith("GB/s"), lines
            assert "…" not in head and "…" not in gbps
            # each link number sits over its figure: right-aligned in the same 4 columns
            cells = [head[c : c + 4] for c in range(5, len(head), 4)]
            values = [gbps[c : c + 4] for c in range(5, len(head), 4)]
            assert all(v.strip() for v in values), (head, gbps)
            numbers += [int(c) for c in cells]
        assert numbers == list(range(LINKS_PER_GPU))
        for chart in screen.query(HistoryChart):
            title = chart.render_line(0).text.rstrip()
            assert TITLE.match(title) and len(title) <= chart.size.width, title
