"""Colour that shows what matters: deviation mode against the group median, errors on a log scale, round
distinct tick labels with units, NVLink auto-ranged, figures held through noise.

Expected medians and buckets are computed here from the values put in (statistics.median, the scale's
edges written out), not by the code under test.
"""

from __future__ import annotations

import dataclasses
import statistics

import pytest
from live_rack import LiveRack, until
from observed_app import ObservedRackApp

from collectors.rack import GPUS, gpu_label
from monitor.tui.widgets.heatmap import Heatmap
from monitor.view.heat_values import HeatValues
from monitor.view.metrics import METRICS, METRICS_BY_NAME
from monitor.view.model import CellState, GpuView, RackSnapshot
from monitor.view.serving import InstanceView, ServingSnapshot

CLOCK = METRICS_BY_NAME["clock"]
NVLINK = METRICS_BY_NAME["nvlink"]


def rack_of(metric: str, values: dict[int, float]) -> RackSnapshot:
    """A rack whose GPUs report `metric` as given (every other GPU lost)."""
    gpus = tuple(
        GpuView(i, CellState.OK, values={metric: values[i]}) if i in values else GpuView(i, CellState.LOST)
        for i in range(GPUS)
    )
    return dataclasses.replace(RackSnapshot.empty(), ts_ms=1, gpus=gpus)


def serving_of(*models: tuple[str, range]) -> ServingSnapshot:
    """One server per model, on the given GPUs."""
    return ServingSnapshot(
        ts_ms=1,
        instances=tuple(
            InstanceView(f"srv-{n}", "vllm", model, ",".join(map(str, gpus)), "ok")
            for n, (model, gpus) in enumerate(models)
        ),
    )


def test_deviation_is_against_the_median_of_the_gpus_serving_the_same_model():
    # GPUs 0-35 serve a big model at ~1900 MHz, 36-71 a small one at ~1400; GPU 5 straggles at 1100.
    clocks = {i: (1900.0 + i % 3 if i < 36 else 1400.0 + i % 5) for i in range(GPUS)}
    clocks[5] = 1100.0
    serving = serving_of(("big", range(36)), ("small", range(36, 72)))
    frame = HeatValues().frame(rack_of("clock", clocks), CLOCK, deviation=True, serving=serving)
    big = statistics.median(clocks[i] for i in range(36))
    small = statistics.median(clocks[i] for i in range(36, 72))
    assert frame.main[5] == pytest.approx((1100 - big) / big * 100)
    assert frame.main[40] == pytest.approx((clocks[40] - small) / small * 100)
    # bucket 0 is below -20 %; the calm middle is within 2 % of the median
    assert frame.bucket(5) == 0
    assert {frame.bucket(i) for i in range(GPUS) if i != 5} <= {4, 5}
    # against the whole rack instead, the two models' normal clocks would read as +-15 % off
    rack_frame = HeatValues().frame(rack_of("clock", clocks), CLOCK, deviation=True)
    assert {rack_frame.bucket(i) for i in range(GPUS) if i != 5} - {4, 5}


def test_deviation_without_serving_rows_uses_the_rack_and_skips_lost_gpus():
    temps = {i: 60.0 for i in range(GPUS) if i != 9}
    temps[30] = 86.0
    frame = HeatValues().frame(rack_of("temp", temps), METRICS_BY_NAME["temp"], deviation=True)
    assert frame.main[30] == pytest.approx((86 - 60) / 60 * 100)
    assert frame.bucket(30) == 9  # above +20 %: the hot GPU is the one orange cell
    assert frame.main[9] is None  # lost: no figure, its cell says LOST


def test_errors_go_on_a_log_scale_whose_legend_shows_counts():
    errors = METRICS_BY_NAME["errors"]
    # one error, a handful and thousands are three colours; none is the bottom of the scale
    assert [errors.bucket(n) for n in (0, 1, 4, 3_100)] == [0, 1, 2, 8]
    heatmap = Heatmap()
    heatmap.set_geometry(52, 48)
    heatmap.update_view(RackSnapshot.empty(), errors, 0)
    legend = heatmap.build_row(len(heatmap.rows) - 1).text.split()
    assert legend == ["err", "0", "1", "3", "10", "30", "100", "300", "1k", "3k", "10k"]


def parse_tick(text: str) -> float:
    return float(text[:-1]) * 1000 if text.endswith("k") else float(text)


@pytest.mark.parametrize("width", [36, 52, 68, 100])
@pytest.mark.parametrize("metric", METRICS, ids=[m.name for m in METRICS])
def test_every_legend_names_its_unit_and_its_ticks_are_distinct_and_rising(metric, width):
    heatmap = Heatmap()
    heatmap.set_geometry(width, 48)
    heatmap.update_view(RackSnapshot.empty(), metric, 0)
    unit, *ticks = heatmap.build_row(len(heatmap.rows) - 1).text.split()
    assert unit == metric.scale.unit and unit in {"%", "W", "C", "GiB", "MHz", "GB/s", "err"}
    numbers = [parse_tick(t) for t in ticks]
    assert len(numbers) >= 5 and numbers == sorted(set(numbers)), ticks


def test_nvlink_is_ranged_to_what_the_rack_moves_and_the_range_does_not_flap():
    values = HeatValues()
    busy = {i: 10.0 + (i % 5) for i in range(GPUS)}  # 10-14 GB/s on every GPU
    frame = values.frame(rack_of("nvlink", busy), NVLINK)
    assert frame.scale.edges[-1] + frame.scale.edges[1] == 20  # a scale up to 20 GB/s, in steps of 2
    assert len({frame.bucket(i) for i in range(GPUS)}) == 3  # 10-11.9, 12-13.9, 14: three colours
    # a peak just past the top moves it up; the same peak just under it again leaves it there
    up = values.frame(rack_of("nvlink", {**busy, 3: 20.5}), NVLINK).scale
    again = values.frame(rack_of("nvlink", {**busy, 3: 19.5}), NVLINK).scale
    assert up.edges[-1] + up.edges[1] == 50 and again == up


def test_figures_hold_through_noise_and_follow_a_real_move():
    values = HeatValues()
    util = METRICS_BY_NAME["util"]
    shown = [values.frame(rack_of("util", {0: v}), util).main[0] for v in (93, 96, 90, 94, 70)]
    assert shown == [93, 93, 93, 93, 70]  # within 5 points the cell keeps its figure


async def test_a_straggler_is_the_one_cell_off_the_median_in_deviation_mode():
    live = LiveRack("straggler")
    app = ObservedRackApp(live.head, interval=0)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(8):
                await live.tick()
            await until(pilot, lambda: app.snapshot.version == live.head.version, "the last frame shown")
            await pilot.press("c", "d")
            await pilot.pause()
            heatmap = app.query_one(Heatmap)
            frame, title = heatmap.frame, str(heatmap.border_title)
            snapshot = app.snapshot
    finally:
        live.stop()
    fault = live.rack.scenario.fault
    assert fault is not None and fault.gpu is not None
    assert frame.deviation and "median" in title
    far = {g for g, v in frame.main.items() if v is not None and abs(v) > 20}
    assert far == {fault.gpu}, [gpu_label(g) for g in far]
    clocks = [g.values["clock"] for g in snapshot.gpus if g.state is CellState.OK]
    median = statistics.median(clocks)
    straggler = snapshot.gpu(fault.gpu).values["clock"]
    assert frame.main[fault.gpu] == pytest.approx((straggler - median) / median * 100, abs=3)
