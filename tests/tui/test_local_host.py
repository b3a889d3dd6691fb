"""Local mode under Pilot: the real RackApp over the real NVML collector on a simulated host shows only the
GPUs that exist there, laid out for that host (an 8-GPU HGX board, a GB300 tray), never a phantom rack.

Frames come from the NVML collector polling a SimRack host on a manual clock (only the driver is
simulated); the layout is the one `monitor` builds from the collector's static facts (host_layout).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest
from observed_app import ObservedRackApp
from test_hangup import ENDED_S, STARTED_S, end, read_until, start_in_pty
from textual.widgets import DataTable

from collectors.clock import SimClock
from collectors.nvml import NvmlCollector
from collectors.rack import gpu_index
from collectors.sim import SimRack
from monitor.tui.screens.events import EventsScreen
from monitor.tui.screens.nvlink import NvlinkScreen
from monitor.tui.widgets.event_log import EventLog
from monitor.tui.widgets.gpu_detail import GpuDetail
from monitor.tui.widgets.heatmap import Heatmap
from monitor.tui.widgets.nvlink_matrix import NvlinkMatrixView
from monitor.tui.widgets.totals import TotalsBar
from monitor.view.layout import GpuLayout, host_layout
from storage.head import Head

START = 1_764_000_000.0


def rendered(widget) -> str:
    return str(widget.render())


async def shown(app, pilot, screen_type):
    """The current screen once it is `screen_type` and has drawn a model (built in a thread worker)."""
    for _ in range(400):
        await pilot.pause()
        if isinstance(app.screen, screen_type) and app.screen.models_shown >= 1:
            return app.screen
        await asyncio.sleep(0.01)
    raise AssertionError(f"{screen_type.__name__} never drew a model")


def heatmap_lines(app) -> list[str]:
    heatmap = app.query_one(Heatmap)
    return [heatmap.render_line(y).text.rstrip() for y in range(len(heatmap.rows))]


def recorded(host, rack: SimRack, seconds: int, lose: int | None = None) -> tuple[Head, GpuLayout]:
    """`seconds` ticks of the NVML collector over `host` in a head, and the layout `monitor` would use;
    rack GPU `lose` falls off the bus before the last tick."""
    head = Head()
    with NvmlCollector(host, name="gpu-host") as collector:
        for second in range(1, seconds + 1):
            rack.clock.advance(START + second - rack.clock.now())
            if lose is not None and second == seconds:
                rack.sync()
                rack.lose_gpu(lose)
            head.append(collector.poll(round(rack.clock.now() * 1000)))
        return head, host_layout(collector.gpus)


async def test_hgx_board_shows_its_8_gpus_and_counts_only_them():
    rack = SimRack(seed=9, clock=SimClock(start=START))
    host = rack.hgx_host()
    head, layout = recorded(host, rack, 6)
    app = ObservedRackApp(head, interval=0, subtitle="gpu-host (local NVML)", layout=layout)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.next_snapshot(pilot)
        totals = rendered(app.query_one(TotalsBar))
        assert "GPUs ok 8/8" in totals and "/72" not in totals and "stale" not in totals, totals
        lines = heatmap_lines(app)
        assert lines[0].split() == ["GPU", "+0", "+1", "+2", "+3"]
        assert [line.split()[0] for line in lines[1:3]] == ["0-3", "4-7"]
        assert all(line.count("%") == 4 for line in lines[1:3]), lines  # 4 utilisation cells a row
        assert not any(line.startswith(("SW", "T0", "T1")) for line in lines), lines
        assert "GPU0  NVML index 0" in rendered(app.query_one(GpuDetail))
        # The cursor stays on the board: right past the last column, down past the last row.
        for key in ("right",) * 6 + ("down",) * 3:
            await pilot.press(key)
        assert app.selected == 7
        assert "GPU7  NVML index 7" in rendered(app.query_one(GpuDetail))


async def test_a_lost_board_gpu_is_named_by_nvml_index_and_counted_of_8():
    rack = SimRack(seed=9, clock=SimClock(start=START))
    host = rack.hgx_host()
    head, layout = recorded(host, rack, 6, lose=host.gpu_indices[5])
    app = ObservedRackApp(head, interval=0, layout=layout)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.next_snapshot(pilot)
        assert "GPUs ok 7/8 (1 lost)" in rendered(app.query_one(TotalsBar))
        row = heatmap_lines(app)[2]  # GPUs 4-7
        assert row.split()[:3] == ["4-7", row.split()[1], "LOST"], row
        log = rendered(app.query_one(EventLog))
        assert "GPU5" in log and "T02" not in log, log
        await pilot.press("v")  # the events timeline names it the same way
        screen = await shown(app, pilot, EventsScreen)
        table = screen.query_one(DataTable)
        wheres = {str(table.get_row_at(r)[2]) for r in range(table.row_count)}
        assert "GPU5" in wheres and not any(w.startswith("T0") for w in wheres), wheres


async def test_gb300_tray_host_shows_its_one_tray():
    rack = SimRack(seed=9, clock=SimClock(start=START))
    head, layout = recorded(rack.tray_of(16), rack, 4)
    app = ObservedRackApp(head, interval=0, layout=layout)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.next_snapshot(pilot)
        assert "GPUs ok 4/4" in rendered(app.query_one(TotalsBar))
        lines = heatmap_lines(app)
        assert lines[0].split() == ["Tray", "G1", "G2", "G3", "G4"]
        assert [line.split()[0] for line in lines[1:] if line.strip() and line[0] == "T"] == ["T16"]
        assert not any(line.startswith("SW") for line in lines), lines
        assert app.selected == gpu_index(16, 1)
        assert "T16.G1  tray 16 module 1" in rendered(app.query_one(GpuDetail))


async def test_board_nvlink_matrix_has_a_row_per_board_gpu_and_nothing_else():
    rack = SimRack(seed=9, clock=SimClock(start=START))
    head, layout = recorded(rack.hgx_host(), rack, 6)
    app = ObservedRackApp(head, interval=0, layout=layout)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.next_snapshot(pilot)
        await pilot.press("l")
        screen = await shown(app, pilot, NvlinkScreen)
        view = screen.query_one(NvlinkMatrixView)
        rows = [view.render_line(y).text for y in range(view.size.height)]
        labels = [row[1:7].strip() for row in rows if row[1:4] == "GPU"]
        assert labels == [f"GPU{i}" for i in range(8)], rows
        assert not any("T01" in row or "T02" in row for row in rows)
        summary = str(screen.query_one("#nvlink-summary").render())
        assert "host " in summary and "/72" not in summary, summary
        for _ in range(12):  # the cursor stops at the last board GPU
            await pilot.press("down")
        assert (view.gpu, app.selected) == (7, 7)


@pytest.mark.skipif(sys.platform != "linux", reason="a real pty, as test_hangup uses")
def test_monitor_demo_hgx_draws_the_board_in_a_real_terminal():
    demo = [sys.executable, "-c", "from monitor.cli import main; main()", "demo", "--hgx", "--seed", "3"]
    proc, master = start_in_pty(demo, rows=30, cols=120)
    try:
        screen = read_until(master, b"GPUs ok 8/8", STARTED_S)
        assert b"GPUs ok 8/8" in screen, screen[-2000:]
        assert b"/72" not in screen
        proc.send_signal(signal.SIGHUP)
        read_until(master, b"\0never\0", 1.0)
        assert proc.wait(timeout=ENDED_S) == 0
    finally:
        end(proc, master)
