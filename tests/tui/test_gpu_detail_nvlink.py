"""The GPU detail's NVLink chart has points, and they are what the simulator put on the GPU's links."""

from __future__ import annotations

import pytest
from live_rack import LiveRack, until
from observed_app import ObservedRackApp

from monitor.tui.screens.gpu_detail import GpuDetailScreen
from monitor.tui.widgets.history_chart import BLOCKS, HistoryChart

TICKS = 8


async def test_the_gpu_detail_nvlink_chart_plots_the_simulators_link_traffic():
    live = LiveRack("steady")
    app = ObservedRackApp(live.head, interval=0)
    try:
        async with app.run_test(size=(200, 50)) as pilot:
            for _ in range(TICKS):
                await live.tick()
            await until(pilot, lambda: app.snapshot.version == live.head.version, "the last frame shown")
            await pilot.press("right", "down", "enter")  # T02.G2: rack GPU 5
            await until(
                pilot,
                lambda: (
                    isinstance(app.screen, GpuDetailScreen)
                    and app.screen.models_shown >= 1
                    and app.screen.query_one("#chart-nvlink", HistoryChart)._data[3]
                    == live.head.latest()[-1].ts_ms
                ),
                "the GPU detail drawn for the newest frame",
            )
            screen = app.screen
            assert screen.gpu == 5
            chart = screen.query_one("#chart-nvlink", HistoryChart)
            points, _, since, until_ms = chart._data
            rows = [chart.render_line(y).text for y in range(chart.size.height)]  # title, bars, marks
    finally:
        live.stop()
    ticks = sorted(live.link_kib)
    assert [ts for ts, _ in points] == ticks and until_ms == ticks[-1]
    assert points[0][1] is None  # the first frame has no frame before it: no rate, not a zero
    for ts, gbps in points[1:]:
        assert gbps is not None and gbps > 0
        assert gbps == pytest.approx(live.truth_gbps(ts, 5), rel=1e-6)  # counters are whole KiB
    # The strip draws them: a bar in each column that holds a point (5 min over the chart's width, by
    # hand), blank elsewhere; the chart scales to its own peak, so the top row has the peak's bar.
    width = len(rows[1])
    columns = {min(width - 1, (ts - since) * width // (until_ms - since)) for ts, _ in points[1:]}
    assert len(rows) - 2 >= HistoryChart.BAR_ROWS
    for row in rows[1:-1]:
        assert {i for i, c in enumerate(row) if c != " "} <= columns, rows
        assert set(row.replace(" ", "")) <= set(BLOCKS[1:])
    assert {i for i, c in enumerate(rows[-2]) if c != " "} == columns, rows  # the bottom row: every point
    assert rows[1].strip(), rows  # the top row: the peak
    assert rows[0].startswith("NVLink TX+RX (GB/s)  now ") and "now --" not in rows[0]
