"""NVLink, one computation: header == sum over GPUs == sum over switch chips == the simulator's truth."""

from __future__ import annotations

import itertools

import pytest

from collectors.clock import SimClock
from collectors.nvml import NvmlCollector
from collectors.rack import GPUS, LINKS_PER_GPU
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from monitor.view.builder import SnapshotBuilder
from monitor.view.nvlink import LINE_GBPS, NvlinkBuilder, link_frame, nvlink_rates, rack_nvlink_text
from storage.frame import Frame, batch_from_columns

T0 = 1_760_000_000.0


def _sim_run(ticks: int, phase: float = 0.0) -> tuple[list[Frame], list[dict[int, float]]]:
    """Frames of the fast path and, per pair, the GB/s the simulator put on each link (its own reads)."""
    clock = SimClock(T0 + phase)
    rack = SimRack(seed=3, clock=clock, start=T0)
    source = SimRackFrames(rack)
    frames, truth, before = [], [], None
    for _ in range(ticks):
        clock.advance(1.0)
        frames.append(source.poll(round(clock.now() * 1000)))
        now = {
            g * LINKS_PER_GPU + k: rack.gpus[g].links.read_link_tx(k) + rack.gpus[g].links.read_link_rx(k)
            for g in range(GPUS)
            for k in range(LINKS_PER_GPU)
        }
        if before is not None:
            truth.append({i: (now[i] - before[i]) * 1024 / 1e9 for i in now})
        before = now
    return frames, truth


@pytest.mark.parametrize("phase", [0.0, 0.999])  # reads on a step boundary and just before one
def test_header_equals_gpus_equals_switch_columns_equals_the_simulators_links(phase: float) -> None:
    frames, truth = _sim_run(6, phase)
    builder, matrix_builder = SnapshotBuilder(), NvlinkBuilder()
    for n in range(2, len(frames) + 1):
        snap = builder.build(frames[:n])
        matrix = matrix_builder.build(frames[:n])
        links = truth[n - 2]
        expected_rack = sum(links.values()) / 1000
        header = snap.totals.nvlink_tbps
        assert header == pytest.approx(expected_rack, rel=1e-6)  # counters are whole KiB
        assert sum(g.values["nvlink"] for g in snap.gpus) / 1000 == pytest.approx(header, rel=1e-12)
        assert sum(s.gbps for s in snap.switches) / 1000 == pytest.approx(header, rel=1e-12)
        assert sum(c.gbps for c in matrix.columns) / 1000 == pytest.approx(header, rel=1e-12)
        for g in (0, 41, 71):
            assert snap.gpu(g).values["nvlink"] == pytest.approx(
                sum(links[g * LINKS_PER_GPU + k] for k in range(LINKS_PER_GPU)), rel=1e-6
            )
            for k in (0, 17):
                assert matrix.link(g, k).gbps == pytest.approx(
                    links[g * LINKS_PER_GPU + k], rel=1e-5, abs=2e-6
                )


def test_a_steady_rack_reads_steady_whatever_the_phase_of_the_reads() -> None:
    # The simulator's counters used to jump a whole step at the step boundary: reads straddling it saw
    # 0 and then 2x on a steady rack (the 0.44 / 0.9 / 1.8 TB/s header). A read a fraction p into step
    # n sees the counters of step n-1 plus p of step n's traffic, so each one-second pair's rate is
    # (1 - p) S(n-1) + p S(n): between the traffic of the two steps it straddles (S, the sim's own
    # per-step traffic: its end-of-step counters, which no read sees as such).
    for phase in (0.0, 0.5, 0.999):
        clock = SimClock(T0 + phase)
        rack = SimRack(seed=3, clock=clock, start=T0)
        source = SimRackFrames(rack)
        frames, ends = [], [_end_of_step_kib(rack)]
        for _ in range(8):
            clock.advance(1.0)
            frames.append(source.poll(round(clock.now() * 1000)))
            ends.append(_end_of_step_kib(rack))
        steps = [(b - a) * 1024 / 1e12 for a, b in itertools.pairwise(ends)]  # TB in step n
        history = SnapshotBuilder().build(frames).nvlink_history_tbps
        assert len(history) == len(frames) - 1
        for i, rate in enumerate(history):
            # The pair (frames[i], frames[i + 1]) reads during steps i + 1 and i + 2 (steps[i], steps[i + 1]).
            expected = (1 - phase) * steps[i] + phase * steps[i + 1]
            assert rate == pytest.approx(expected, rel=1e-5), (phase, i, history, steps)


def _end_of_step_kib(rack: SimRack) -> float:
    """The rack's NVLink DATA KiB carried (TX + RX) at the end of its current step."""
    return sum(g.links.tx_kib + g.links.rx_kib for g in rack.gpus)


@pytest.mark.parametrize("mode", ["zero", "not-supported"])
def test_an_all_link_field_that_answers_0_or_not_supported_is_the_sum_of_the_links(mode: str) -> None:
    clock = SimClock(T0)
    rack = SimRack(seed=3, clock=clock, start=T0, nvlink_total=mode)
    collector = NvmlCollector(rack.tray_of(1), name="tray01")
    try:
        for _ in range(3):  # NOT_SUPPORTED is learnt on the first poll and planned around
            clock.advance(1.0)
            frame = collector.poll(round(clock.now() * 1000))
    finally:
        collector.close()
    gpu = frame.table("gpu").to_pylist()
    links = frame.table("nvlink").to_pylist()
    assert gpu
    for row in gpu:
        own = [link for link in links if link["gpu"] == row["gpu"]]
        assert row["nvlink_tx_kib"] == sum(link["tx_kib"] for link in own) > 0
        assert row["nvlink_rx_kib"] == sum(link["rx_kib"] for link in own) > 0


def _link_frames(tx_jump: int) -> tuple[Frame, Frame]:
    """Two frames 1 s apart: GPU 0's links move 1 GB each way, link 5's TX moves `tx_jump` KiB."""

    def frame(tick: int, extra: int) -> Frame:
        rows = {"ts": [], "gpu": [], "link": [], "state": [], "tx_kib": [], "rx_kib": []}
        for k in range(LINKS_PER_GPU):
            rows["ts"].append(T0 * 1000 + tick * 1000)
            rows["gpu"].append(0)
            rows["link"].append(k)
            rows["state"].append(1)
            moved = tick * 1_000_000_000 // 1024
            rows["tx_kib"].append(moved + (extra if k == 5 else 0))
            rows["rx_kib"].append(moved)
        cols = {
            **rows,
            **{c: [0] * LINKS_PER_GPU for c in ("rx_errors", "symbol_errors", "recovery", "recovery_failed")},
        }
        return Frame(int(T0 * 1000) + tick * 1000, {"nvlink": batch_from_columns("nvlink", cols)})

    return frame(1, 0), frame(2, tx_jump)


def test_a_rate_above_the_line_rate_is_flagged_and_left_out_of_every_total() -> None:
    over = int((LINE_GBPS + 1) * 1e9 / 1024)  # one second of more than the line rate
    old, new = _link_frames(over)
    rates = nvlink_rates(link_frame(old), link_frame(new))
    assert 5 in rates.implausible and 5 not in rates.links
    per_link = 2 * (1_000_000_000 // 1024) * 1024 / 1e9  # TX+RX of a plain link, by hand
    assert rates.gpu_gbps[0] == pytest.approx(17 * per_link, rel=1e-5)
    assert rates.chip_gbps[5] is None
    assert rates.rack_gbps == pytest.approx(17 * per_link, rel=1e-5)
    assert "1 link implausible, left out" in rack_nvlink_text(rates)
    matrix = NvlinkBuilder().build([old, new])
    assert matrix.link(0, 5).implausible and matrix.link(0, 5).gbps is None
    assert matrix.columns[5].implausible == 1
    plain = nvlink_rates(*(link_frame(f) for f in _link_frames(0)))
    assert not plain.implausible and plain.rack_gbps == pytest.approx(18 * per_link, rel=1e-5)
