"""RackSnapshot from frames: rates, reset detection, stale and lost GPUs, totals, events, formatters."""

from __future__ import annotations

import pytest
from tui_frames import (
    LINK_KIB_PER_TICK,
    LOST_GPU,
    STALE_TRAY_GPUS,
    T0_MS,
    gpu_values,
    rack_frame,
    scenario_frames,
)

from collectors.rack import GPUS, LINKS_PER_GPU
from monitor.view import (
    METRICS,
    METRICS_BY_NAME,
    NVLINK_MAX_TBPS,
    CellState,
    RackSnapshot,
    SnapshotBuilder,
    build_snapshot,
)
from storage.increase import step
from storage.schemas import EventKind, GpuState


def expected_gbps(gpu: int, interval_s: float = 1.0) -> float:
    """TX+RX of one test GPU: 18 links x 2 directions x (gpu+1) x 50,000 KiB per tick."""
    kib = 2 * LINKS_PER_GPU * (gpu + 1) * LINK_KIB_PER_TICK
    return kib * 1024 / interval_s / 1e9


def test_the_one_step_treats_a_decrease_as_a_reset():
    assert step(3, 7) == 4
    assert step(7, 2) == 2  # after a reset the new value is all increase
    assert step(None, 2) is None


def test_empty_input_gives_every_gpu_without_data():
    snap = build_snapshot([])
    assert snap == RackSnapshot.empty()
    assert len(snap.gpus) == GPUS
    assert {g.state for g in snap.gpus} == {CellState.NO_DATA}
    assert snap.totals.gpus_ok == 0


def test_values_are_scaled_from_store_units():
    snap = build_snapshot([rack_frame(0), rack_frame(1)])
    gpu = snap.gpu(10)
    raw = gpu_values(10)
    assert gpu.state is CellState.OK
    assert gpu.values["util"] == raw["util_gpu_pct"]
    assert gpu.values["power"] == pytest.approx(raw["power_mw"] / 1000)
    assert gpu.values["temp"] == raw["temp_gpu_c"]
    assert gpu.values["mem"] == pytest.approx(raw["mem_used_mib"] / 1024)
    assert gpu.values["clock"] == raw["sm_clock_mhz"]
    assert gpu.label == "T03.G3"
    assert (gpu.tray, gpu.module) == (3, 3)


def test_nvlink_rate_comes_from_the_last_two_frames():
    snap = build_snapshot([rack_frame(0), rack_frame(1), rack_frame(2)])
    for i in (0, 35, 71):
        assert snap.gpu(i).values["nvlink"] == pytest.approx(expected_gbps(i))
    total = sum(expected_gbps(i) for i in range(GPUS)) / 1000
    assert snap.totals.nvlink_tbps == pytest.approx(total)


def test_nvlink_rate_uses_the_frame_spacing():
    frames = [rack_frame(t, interval_ms=2000) for t in range(2)]
    snap = build_snapshot(frames)
    assert snap.interval_ms == 2000
    assert snap.gpu(5).values["nvlink"] == pytest.approx(expected_gbps(5, 2.0))


def test_a_single_frame_has_no_rate():
    snap = build_snapshot([rack_frame(3)])
    assert snap.gpu(0).values["nvlink"] is None
    assert snap.totals.nvlink_tbps is None
    assert snap.nvlink_history_tbps == ()


def test_a_link_counter_reset_counts_its_new_value_and_no_other_series():
    # GPU 7's link 3 TX restarts at 10 KiB: that series moved 10 KiB (Prometheus' rule), the other 35
    # series of the GPU moved as usual, and the all-link column (reset here too) is not what is rated.
    reset_link = {(7, 3): {"tx_kib": 10}}
    reset_total = {7: {"nvlink_tx_kib": 10}}
    snap = build_snapshot([rack_frame(5), rack_frame(6, overrides=reset_total, link_overrides=reset_link)])
    one_series = 8 * LINK_KIB_PER_TICK * 1024 / 1e9
    gpu7 = expected_gbps(7) - one_series + 10 * 1024 / 1e9
    assert snap.gpu(7).values["nvlink"] == pytest.approx(gpu7)
    assert snap.gpu(8).values["nvlink"] == pytest.approx(expected_gbps(8))
    total = (sum(expected_gbps(i) for i in range(GPUS) if i != 7) + gpu7) / 1000
    assert snap.totals.nvlink_tbps == pytest.approx(total)


def test_lost_gpu_reads_lost_with_no_values_and_is_not_ok():
    snap = build_snapshot(scenario_frames())
    gpu = snap.gpu(LOST_GPU)
    assert gpu.state is CellState.LOST
    assert gpu.values["power"] is None
    assert snap.totals.gpus_lost == 1


def test_gpu_missing_for_more_than_three_intervals_is_stale_with_its_age():
    snap = build_snapshot(scenario_frames(6))  # tray 3 last answered at tick 1, newest is tick 5
    for i in STALE_TRAY_GPUS:
        assert snap.gpu(i).state is CellState.STALE
        assert snap.gpu(i).age_s == pytest.approx(4.0)
    assert snap.totals.gpus_stale == len(STALE_TRAY_GPUS)
    assert snap.totals.gpus_ok == GPUS - len(STALE_TRAY_GPUS) - 1


def test_gpu_missing_for_three_intervals_or_less_is_still_ok():
    frames = [rack_frame(t, missing=(4,) if t >= 2 else ()) for t in range(5)]  # 3 intervals old
    assert build_snapshot(frames).gpu(4).state is CellState.OK
    frames.append(rack_frame(5, missing=(4,)))  # 4 intervals old
    assert build_snapshot(frames).gpu(4).state is CellState.STALE


def test_collector_stale_row_is_stale_and_aged_from_the_last_good_row():
    # Past the 3-interval lookback a stand-in is what the cell shows: stale, aged from the last reading.
    frames = [rack_frame(t, states={3: GpuState.STALE} if t >= 1 else None) for t in range(5)]
    gpu = build_snapshot(frames).gpu(3)
    assert gpu.state is CellState.STALE
    assert gpu.age_s == pytest.approx(4.0)


def test_stand_ins_every_other_tick_keep_the_last_reading_on_screen():
    # A loaded collector whose scrape outlasts the interval answers every other tick; the ticks in
    # between hold stand-ins. The cells, the rack count and the power total keep the last reading
    # (as a Prometheus lookback does) instead of flipping the whole rack to stale and back.
    frames = [
        rack_frame(t, states=dict.fromkeys(range(GPUS), GpuState.STALE) if t % 2 else None) for t in range(6)
    ]
    snap = build_snapshot(frames)
    assert snap.totals.gpus_ok == GPUS
    assert {snap.gpu(g).state for g in range(GPUS)} == {CellState.OK}
    whole = build_snapshot(frames[:5])  # the tick before: every GPU's own reading
    assert snap.totals.power_kw == pytest.approx(whole.totals.power_kw)
    assert snap.totals.power_covered == GPUS


def test_error_state_is_kept():
    snap = build_snapshot([rack_frame(0, states={9: GpuState.ERROR})])
    assert snap.gpu(9).state is CellState.ERROR
    assert snap.totals.gpus_error == 1


def test_errors_metric_sums_nvlink_and_ecc_increases_over_the_window():
    frames = [
        rack_frame(
            t,
            overrides={2: {"ecc_corrected": 5 * t, "ecc_uncorrected": t}},
            link_overrides={(2, 7): {"symbol_errors": 2 * t}, (3, 0): {"recovery": 10}},
        )
        for t in range(4)
    ]
    snap = build_snapshot(frames)
    assert snap.gpu(2).values["errors"] == (5 + 1 + 2) * 3
    assert snap.gpu(3).values["errors"] == 0  # a constant counter is no new error
    # Link 7 lands on switch chip 8, i.e. switch tray 4.
    assert snap.switches[3].errors == 2 * 3
    assert snap.switches[0].errors == 0


def test_errors_window_drops_old_increases():
    frames = [rack_frame(t, overrides={0: {"ecc_corrected": 9 if t >= 1 else 0}}) for t in range(5)]
    assert build_snapshot(frames, error_window_s=60).gpu(0).values["errors"] == 9
    assert build_snapshot(frames, error_window_s=2).gpu(0).values["errors"] == 0


def test_totals_sum_power_of_ok_gpus_and_power_limits():
    snap = build_snapshot(scenario_frames())
    ok = [i for i in range(GPUS) if i != LOST_GPU and i not in STALE_TRAY_GPUS]
    assert snap.totals.power_kw == pytest.approx(sum(gpu_values(i)["power_mw"] for i in ok) / 1e6)
    assert snap.totals.power_limit_kw == pytest.approx(1.4 * len(ok))
    assert snap.totals.tokens_per_s is None


def test_switch_trays_count_links_up_and_throughput():
    snap = build_snapshot([rack_frame(0), rack_frame(1, states={LOST_GPU: GpuState.LOST})])
    sw = snap.switches[0]
    assert sw.chips == (1, 2)
    assert sw.links_total == 144
    assert sw.links_up == 142  # the lost GPU's links 0 and 1 are not active
    per_link = sum(2 * (i + 1) * LINK_KIB_PER_TICK for i in range(GPUS) if i != LOST_GPU)
    assert sw.gbps == pytest.approx(2 * per_link * 1024 / 1e9)


def test_history_has_one_point_per_frame_and_is_bounded():
    frames = [rack_frame(t) for t in range(10)]
    snap = build_snapshot(frames, history=4)
    assert len(snap.power_history_kw) == 4
    assert len(snap.nvlink_history_tbps) == 4
    assert snap.nvlink_history_tbps[-1] == pytest.approx(snap.totals.nvlink_tbps)
    assert snap.totals.nvlink_tbps <= NVLINK_MAX_TBPS


def test_events_are_newest_first_and_bounded():
    frames = [rack_frame(t, events=[{"kind": EventKind.XID, "gpu": t, "code": 74}]) for t in range(5)]
    snap = build_snapshot(frames, events=3)
    assert [e.gpu for e in snap.events] == [4, 3, 2]
    assert snap.events[0].ts_ms == T0_MS + 4000
    assert snap.events[0].text == "12:00:04 XID 74    T02.G1 NVLink error"
    assert snap.events[0].severe


def test_event_text_names_clock_reasons_and_links():
    frames = [
        rack_frame(
            0,
            events=[
                {"kind": EventKind.CLOCKS_EVENT, "gpu": 20, "code": 0x4 | 0x40},
                {"kind": EventKind.LINK_DOWN, "gpu": 71, "link": 17, "detail": "link inactive"},
            ],
        )
    ]
    link, clocks = build_snapshot(frames).events
    assert clocks.text == "12:00:00 CLOCKS    T06.G1 sw-power-cap, hw-thermal"
    assert not clocks.severe
    assert link.text == "12:00:00 LINK DOWN T18.G4 L17 link inactive"


def test_clock_reasons_are_decoded_on_the_gpu():
    snap = build_snapshot([rack_frame(0, overrides={1: {"clocks_event_reasons": 0x1 | 0x8}})])
    assert snap.gpu(1).clock_reasons == ("idle", "hw-slowdown")


def test_builder_caches_frames_and_forgets_those_out_of_the_window():
    builder = SnapshotBuilder(history=3)
    frames = [rack_frame(t) for t in range(8)]
    for n in range(1, len(frames) + 1):
        snap = builder.build(frames[:n])
    assert snap == build_snapshot(frames, history=3)
    assert len(builder._frames) == builder.frames_needed()


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("util", 7, "  7%"),
        ("util", 100, "100%"),
        ("power", 612.4, " 612W"),
        ("power", 1400, "1400W"),
        ("temp", 38, " 38C"),
        ("mem", 277.5, "278G"),
        ("clock", 2070, "2070"),
        ("nvlink", 0.001, "    0"),
        ("nvlink", 1.8432, " 1.84"),
        ("nvlink", 31.3, " 31.3"),
        ("nvlink", 1912.5, " 1912"),
        ("errors", 0, "   0"),
        ("errors", 1234, "1.2k"),
        ("errors", 56_789, " 57k"),
        ("errors", 2_500_000, "2.5M"),
    ],
)
def test_formatters_are_fixed_width(name, value, text):
    metric = METRICS_BY_NAME[name]
    assert metric.cell(value) == text
    assert len(metric.cell(value)) == metric.width


def test_every_metric_formats_a_missing_value_and_buckets_its_range():
    for metric in METRICS:
        assert metric.cell(None).strip() == "--"
        assert len(metric.cell(None)) == metric.width
        assert metric.bucket(None) is None
        top = metric.scale.edges[-1]
        assert metric.bucket(metric.lo) == 0
        assert metric.bucket(top) == 9
        assert metric.bucket(top * 10 + 10) == 9
        assert metric.bucket(metric.lo - 100) == 0
    # errors on a log scale: none, one, and thousands are three different colours
    errors = METRICS_BY_NAME["errors"]
    assert [errors.bucket(n) for n in (0, 1, 3_100)] == [0, 1, 8]


def test_a_collector_late_event_reads_as_one_line_in_the_log():
    from monitor.tui.screens.events import FILTERS, event_cells
    from monitor.view.model import EventView

    detail = "collector late by 1.4 s: 90 of 90 endpoints missed tick 12:00:03"
    ev = EventView(1_700_000_003_000, EventKind.COLLECTOR_LATE, None, None, None, "rack-a", detail)
    assert ev.text.endswith(f" LATE      rack-a {detail}")  # the log names the source, as the events view
    assert event_cells(ev)[1:] == (" LATE", "rack-a", detail)
    assert EventKind.COLLECTOR_LATE in FILTERS["collector"]
