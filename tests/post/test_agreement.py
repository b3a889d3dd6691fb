"""Agreement: the live view model, `monitor report`, `monitor snapshot` and report.html give the same rack
figures over one recorded store per sim scenario, and these equal the simulator's own ground truth.

Each scenario runs 90 s on a manual clock (the fault starts at 60 s) through the sim's fast frame
path into a real store. While recording, the test reads the simulator's state after each tick: the
tokens each instance has generated (Instance.generated_lifetime: its ground truth, which a server
restart does not zero as it zeroes the server's own counter), the power each GPU
draws (SimRack.gpus[g].power_mw, for GPUs the sim has not lost) and the NVLink traffic each GPU's
links have carried, sent plus received (SimRack.nvlink_carried_kib: the aggregate the sim adds each
step's traffic to, not the per-link counters the store holds). Expected values come from there,
never from the code under test.

A figure is one entry of QUANTITIES: (name, the sim's truth); each surface says every one.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from collectors.rack import GPUS
from collectors.sim.scenarios import Restart, Scenario
from monitor.backfill import SimFrames
from monitor.report import summarize
from monitor.report_html import render_report
from monitor.snapshot import snapshot
from monitor.timespec import Window
from monitor.tui.widgets.totals import totals_text
from monitor.view.builder import SnapshotBuilder
from storage.frame import Frame, batch_from_rows
from storage.reader import StoreReader
from storage.schemas import GpuState
from storage.writer import StoreWriter

SCENARIOS = ("steady", "thermal", "nvlink-flap", "gpu-lost", "straggler", "endpoint-down", "restart")
SEED = 3
START_S = 1_750_000_000
TICKS = 90
WINDOW_S = 10
"""Rates are compared over the last 10 s: the live header's rate window."""


@dataclass
class Recording:
    """A recorded store, its frames, and the simulator's truth per tick."""

    root: Path
    frames: list[Frame]
    tokens: list[dict[str, int]]
    """Per tick: tokens generated so far per instance name (the sim's truth, restarts or not)."""
    power_mw: list[dict[int, int]]
    """Per tick: power_mw per GPU the sim has not lost."""
    nvlink_kib: list[dict[int, float]]
    """Per tick: NVLink KiB carried so far (TX+RX) per GPU the sim has not lost."""
    link_kib: list[float] = field(default_factory=list)
    """Per tick, when recorded with `watch`: one link's TX+RX KiB carried so far."""
    answering: int = 0
    """Instances answering at the last tick."""
    scenario: Scenario | None = None
    """The sim's scenario object (its fault and, for `restart`, the tray's GPUs and instances)."""

    @property
    def window(self) -> Window:
        return Window(self.frames[-1 - WINDOW_S].ts_ms, self.frames[-1].ts_ms)


def record(
    root: Path,
    scenario: str,
    mutate: Callable[[int, Frame], Frame] | None = None,
    watch: tuple[int, int] | None = None,
    fault_at: float = 60.0,
) -> Recording:
    """TICKS seconds of the sim rack into a store at root, with the sim's truth at every tick.

    With `watch` (gpu, link), that link's own traffic (TX+RX KiB carried so far) is kept too."""
    sim = SimFrames(SEED, scenario, START_S, 1.0, fast=True, fault_at=fault_at)
    rec = Recording(root, [], [], [], [], scenario=sim.rack.scenario)
    try:
        with StoreWriter(root, compaction="off", flush_interval_s=3600, grace_s=0.0) as writer:
            for tick in range(TICKS):
                frame = next(sim)
                rec.tokens.append({i.name: i.generated_lifetime for i in sim.rack.workload.instances})
                rec.power_mw.append({g: gpu.power_mw for g, gpu in enumerate(sim.rack.gpus) if not gpu.lost})
                rec.nvlink_kib.append(sim.rack.nvlink_carried_kib())
                if watch is not None:
                    links = sim.rack.gpus[watch[0]].links
                    rec.link_kib.append(links.read_link_tx(watch[1]) + links.read_link_rx(watch[1]))
                rec.answering = sum(i.answering for i in sim.rack.workload.instances)
                frame = mutate(tick, frame) if mutate else frame
                writer.append(frame)
                rec.frames.append(frame)
    finally:
        sim.close()
    return rec


def truth_tokens_per_s(rec: Recording) -> float:
    """Generated tokens over the window by the sim's own counters, per second of the window."""
    before, after = rec.tokens[-1 - WINDOW_S], rec.tokens[-1]
    return sum(after[name] - before[name] for name in after) / WINDOW_S


def truth_power_kw(rec: Recording, tick: int = -1) -> float:
    return sum(rec.power_mw[tick].values()) / 1e6


def truth_nvlink_tb_s(rec: Recording, first: int = -1 - WINDOW_S, last: int = -1) -> float:
    """Rack NVLink TX+RX in TB/s between two ticks, from the traffic the sim's links carried."""
    before, after = rec.nvlink_kib[first], rec.nvlink_kib[last]
    seconds = (rec.frames[last].ts_ms - rec.frames[first].ts_ms) / 1000
    return sum(after[g] - before[g] for g in after if g in before) * 1024 / 1e12 / seconds


def _nvlink_covered(header: str) -> int:
    """The GPUs the header's NVLink total covers: '(71/72 GPUs)' when not all of them."""
    part = re.search(r"\((\d+)/\d+ GPUs\)", header)
    return int(part.group(1)) if part else GPUS


def surfaces(rec: Recording, tmp: Path) -> dict[str, dict[str, float]]:
    """What each surface says about the window: tokens_per_s, power_kw (newest tick), power_covered,
    NVLink TB/s and the GPUs it covers.

    The live view's NVLink figure is its pair rate (monitor.view.nvlink) between the window's first and
    last frame, the interval the others rate over; test_the_live_header_nvlink_is_the_sims_every_second
    holds its one-second figures to the sim's.
    """
    live = SnapshotBuilder(rate_window_s=WINDOW_S).build(rec.frames).totals
    live_nvlink = SnapshotBuilder().build([rec.frames[-1 - WINDOW_S], rec.frames[-1]]).totals
    with StoreReader(rec.root) as reader:
        report = summarize(reader, rec.window)
        page = html.unescape(render_report(reader, rec.window))
    out = tmp / "snapshots"
    done = snapshot(out, lambda: ([rec.frames[-1 - WINDOW_S], rec.frames[-1]], GPUS), source="test")
    snap = json.loads(done.summary.read_text())["rack"]
    tokens = re.search(r"sustained: ([\d,.]+) generated tok/s", page)
    power = re.search(r"last ([\d.]+) kW \((\d+)/\d+ GPUs\)", page)
    endpoints = re.search(r"generated tok/s \(the sum of per-endpoint rates, (\d+)/\d+ endpoints", page)
    nvlink = re.search(r"NVLink: ([\d.]+) TB/s TX\+RX \((\d+)/\d+ GPUs", page)
    assert tokens and power and endpoints and nvlink, page[:2000]
    return {
        "live": {
            "tokens_per_s": live.tokens_per_s,
            "power_kw": live.power_kw,
            "covered": live.power_covered,
            "endpoints": live.tokens_covered,
            "nvlink_tb_s": live_nvlink.nvlink_tbps,
            "nvlink_covered": _nvlink_covered(live_nvlink.nvlink_text),
        },
        "report": {
            "tokens_per_s": report["serving"]["tokens_per_s"],
            "power_kw": report["power_kw"]["last"],
            "covered": report["power_kw"]["last_covered"],
            "endpoints": report["serving"]["tokens_covered"],
            "nvlink_tb_s": report["nvlink"]["tb_s"],
            "nvlink_covered": report["nvlink"]["covered"],
        },
        "snapshot": {
            "tokens_per_s": snap["tokens_per_s"],
            "power_kw": snap["power_kw"],
            "covered": snap["power_covered"],
            "endpoints": snap["tokens_covered"],
            "nvlink_tb_s": snap["nvlink_tb_s"],
            "nvlink_covered": snap["nvlink_covered"],
        },
        "report.html": {
            "tokens_per_s": float(tokens.group(1).replace(",", "")),
            "power_kw": float(power.group(1)),
            "covered": int(power.group(2)),
            "endpoints": int(endpoints.group(1)),
            "nvlink_tb_s": float(nvlink.group(1)),
            "nvlink_covered": int(nvlink.group(2)),
        },
    }


QUANTITIES: tuple[tuple[str, Callable[[Recording], float]], ...] = (
    ("tokens_per_s", truth_tokens_per_s),
    ("power_kw", truth_power_kw),
    ("nvlink_tb_s", truth_nvlink_tb_s),
)
"""Each figure the surfaces must agree on, with the sim's truth for it."""


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_surface_gives_the_sims_figures(scenario: str, tmp_path: Path) -> None:
    rec = record(tmp_path / "store", scenario)
    said = surfaces(rec, tmp_path)
    for name, truth in QUANTITIES:
        expected = truth(rec)
        assert expected > 0, (scenario, name)
        for surface, figures in said.items():
            assert figures[name] == pytest.approx(expected, rel=0.005), (scenario, surface, name, figures)
    covered = len(rec.power_mw[-1])  # the GPUs the sim still has
    assert {figures["covered"] for figures in said.values()} == {covered}, said
    assert {figures["nvlink_covered"] for figures in said.values()} == {covered}, said
    assert covered == (GPUS - 1 if scenario == "gpu-lost" else GPUS)
    assert {figures["endpoints"] for figures in said.values()} == {rec.answering}, said
    assert rec.answering == (GPUS - 1 if scenario == "endpoint-down" else GPUS)


@pytest.mark.parametrize("scenario", ["steady", "nvlink-flap", "gpu-lost"])
def test_the_live_header_nvlink_is_the_sims_every_second(scenario: str, tmp_path: Path) -> None:
    # The header's figure is the newest pair's: over each second of the window it is the sim's traffic
    # in that second (no jumps between 0.44 and 1.8 TB/s on a steady rack), and the header says what
    # it covers whenever that is not the whole rack.
    rec = record(tmp_path / "store", scenario)
    builder = SnapshotBuilder(rate_window_s=WINDOW_S)
    for tick in range(TICKS - WINDOW_S, TICKS):
        totals = builder.build(rec.frames[: tick + 1]).totals
        expected = truth_nvlink_tb_s(rec, tick - 1, tick)
        assert totals.nvlink_tbps == pytest.approx(expected, rel=0.005), (scenario, tick)
        assert _nvlink_covered(totals.nvlink_text) == len(rec.nvlink_kib[tick]), totals.nvlink_text


def _restarts(tick: int, endpoint: str) -> Callable[[int, Frame], Frame]:
    """From `tick` on, `endpoint`'s counters restart: they count only tokens made since tick - 1."""
    base: dict[str, int] = {}

    def mutate(at: int, frame: Frame) -> Frame:
        rows = frame.table("serving").to_pylist()
        for row in rows:
            if row["endpoint"] != endpoint:
                continue
            if at == tick - 1:
                base.update(generation_tokens=row["generation_tokens"], prompt_tokens=row["prompt_tokens"])
            elif at >= tick:
                for column, start in base.items():
                    row[column] -= start
        return Frame(frame.ts_ms, {**frame.batches, "serving": batch_from_rows("serving", rows)})

    return mutate


def test_an_engine_restart_counts_only_new_tokens(tmp_path: Path) -> None:
    # One server restarts inside the rate window: the other 71 keep counting. Summing the counters
    # before taking the rate would read the whole rack as restarted (~70 M tokens in one second).
    restart = TICKS - 4
    rec = record(tmp_path / "store", "steady", _restarts(restart, "vllm-07"))
    expected = truth_tokens_per_s(rec)
    said = surfaces(rec, tmp_path)
    for surface in ("live", "report", "report.html"):
        assert said[surface]["tokens_per_s"] == pytest.approx(expected, rel=0.005), (surface, said)
    # The snapshot's two samples straddle the restart: by Prometheus' rule the restarted series
    # counts only what it made since (its value after the restart), the others their whole increase.
    lost = rec.tokens[restart - 1]["vllm-07"] - rec.tokens[-1 - WINDOW_S]["vllm-07"]
    assert lost > 0
    assert said["snapshot"]["tokens_per_s"] == pytest.approx(expected - lost / WINDOW_S, rel=0.005)


def test_a_driver_reload_and_server_restart_inside_the_window(tmp_path: Path) -> None:
    # The restart scenario with its fault inside the rate window: one tray's servers stop 3 s into it,
    # its driver reloads 2 s later (NVML's NVLink counters restart from 0) and the servers answer again
    # 3 s after that (their token counters from 0). By Prometheus' rule, per series: a reader that keeps
    # every sample counts all the work; two samples that straddle a reset count only what came after it.
    rec = record(tmp_path / "store", "restart", fault_at=TICKS - 1 - WINDOW_S + 3)
    scenario = rec.scenario
    assert isinstance(scenario, Restart) and scenario.fault is not None
    stop = round(scenario.fault_at)
    reload = stop + round(scenario.reload_after_s)
    first = TICKS - 1 - WINDOW_S
    assert first < stop < reload < stop + scenario.back_after_s < TICKS - 1
    said = surfaces(rec, tmp_path)
    tokens, nvlink = truth_tokens_per_s(rec), truth_nvlink_tb_s(rec)
    names = [rec.frames[0].table("serving").column("endpoint")[i].as_py() for i in scenario.instances]
    # Before their reset, inside the window: the servers' tokens up to the stop, the tray's traffic up to
    # the reload (nothing moves in between: the servers are down).
    tokens_lost = sum(rec.tokens[stop][n] - rec.tokens[first][n] for n in names) / WINDOW_S
    kib_lost = sum(rec.nvlink_kib[reload - 1][g] - rec.nvlink_kib[first][g] for g in scenario.gpus)
    nvlink_lost = kib_lost * 1024 / 1e12 / WINDOW_S
    assert tokens_lost > 0 and nvlink_lost > 0
    for surface in ("live", "report", "report.html"):
        assert said[surface]["tokens_per_s"] == pytest.approx(tokens, rel=0.005), (surface, said)
    assert said["snapshot"]["tokens_per_s"] == pytest.approx(tokens - tokens_lost, rel=0.005), said
    for surface in ("report", "report.html"):
        assert said[surface]["nvlink_tb_s"] == pytest.approx(nvlink, rel=0.005), (surface, said)
    for surface in ("live", "snapshot"):
        assert said[surface]["nvlink_tb_s"] == pytest.approx(nvlink - nvlink_lost, rel=0.005), (surface, said)
    for figures in said.values():
        assert figures["power_kw"] == pytest.approx(truth_power_kw(rec), rel=0.005), said
        assert (figures["covered"], figures["nvlink_covered"], figures["endpoints"]) == (GPUS, GPUS, GPUS)
    # The live header, second by second through the stop, the reload and the restart.
    builder = SnapshotBuilder()
    for tick in range(first + 1, TICKS):
        header = builder.build(rec.frames[: tick + 1]).totals
        assert header.nvlink_tbps == pytest.approx(
            truth_nvlink_tb_s(rec, tick - 1, tick), rel=0.005, abs=1e-9
        )
        assert _nvlink_covered(header.nvlink_text) == GPUS, (tick, header.nvlink_text)


def _tray_misses(tick: int, tray: int, ticks: int = 1) -> Callable[[int, Frame], Frame]:
    """From `tick`, for `ticks` ticks, tray `tray`'s four GPUs come back as STALE stand-ins."""

    def mutate(at: int, frame: Frame) -> Frame:
        if not tick <= at < tick + ticks:
            return frame
        rows = frame.table("gpu").to_pylist()
        for row in rows:
            if row["tray"] == tray:
                row.update(state=int(GpuState.STALE), power_mw=None)
        return Frame(frame.ts_ms, {**frame.batches, "gpu": batch_from_rows("gpu", rows)})

    return mutate


def _power_chart(page: str) -> list[tuple[float, float]]:
    """(x, y) of the rack power chart's line; its hollow marks separately are not returned."""
    svg = re.search(r'<svg[^>]*aria-label="Rack GPU power">(.*?)</svg>', page, re.S)
    assert svg
    line = re.search(r'<polyline[^>]*points="([^"]*)"', svg.group(1))
    assert line
    return [(float(x), float(y)) for x, y in (p.split(",") for p in line.group(1).split())]


def test_a_tray_missing_one_tick_is_no_dip(tmp_path: Path) -> None:
    tick = TICKS - 5
    rec = record(tmp_path / "store", "steady", _tray_misses(tick, tray=5))
    whole = [sum(p.values()) / 1e6 for p in rec.power_mw]
    window = Window(rec.frames[0].ts_ms, rec.frames[-1].ts_ms)
    with StoreReader(rec.root) as reader:
        power: dict[str, Any] = summarize(reader, window)["power_kw"]
        page = render_report(reader, window)
    # The range is over whole ticks: the sim's lowest rack power, not the 68-GPU tick's.
    assert power["min"] == pytest.approx(min(whole), rel=0.005)
    assert power["max"] == pytest.approx(max(whole), rel=0.005)
    assert (power["partial_ticks"], power["least_covered"], power["of"]) == (1, GPUS - 4, GPUS)
    # The chart: each of the 90 ticks has its own bucket (120 over 90 s); the partial one is a
    # hollow mark that says what it covers, and the line joins the 89 whole ones.
    svg = re.search(r'<svg[^>]*aria-label="Rack GPU power">(.*?)</svg>', page, re.S)
    assert svg
    marks = re.findall(r"<circle[^>]*><title>([^<]*)</title>", svg.group(1))
    assert len(marks) == 1 and f"{GPUS - 4}/{GPUS} GPUs" in marks[0], marks
    assert len(_power_chart(page)) == TICKS - 1
    # Live: one missed tick is a gap, not a smaller rack. The cells keep the tray's reading from the
    # tick before (a lookback within 3 intervals), and the header sums what the cells show.
    live = SnapshotBuilder().build(rec.frames[: tick + 1])
    assert live.totals.power_covered == GPUS
    assert live.totals.power_kw == pytest.approx(
        truth_power_kw(rec, tick) - _tray_kw(rec, tick, 5) + _tray_kw(rec, tick - 1, 5), rel=0.005
    )
    assert "GPUs)" not in totals_text(live, "rack").plain.split("NVLink")[0]
    assert min(live.power_history_kw) >= min(whole) * 0.995  # the sparkline leaves the tick out


def _tray_kw(rec: Recording, tick: int, tray: int) -> float:
    gpus = range((tray - 1) * 4, tray * 4)
    return sum(rec.power_mw[tick][g] for g in gpus) / 1e6


def _link_counters(
    tick: int, gpu: int, change: Callable[[int, dict[str, Any]], None]
) -> Callable[[int, Frame], Frame]:
    """From `tick` on, `change(at, row)` edits the nvlink rows of `gpu` (row by row, in place)."""

    def mutate(at: int, frame: Frame) -> Frame:
        if at < tick - 1:
            return frame
        rows = frame.table("nvlink").to_pylist()
        for row in rows:
            if row["gpu"] == gpu:
                change(at, row)
        return Frame(frame.ts_ms, {**frame.batches, "nvlink": batch_from_rows("nvlink", rows)})

    return mutate


def test_a_link_counter_restart_counts_only_new_traffic(tmp_path: Path) -> None:
    # GPU 7's 18 link counters restart from 0 inside the window (a driver reload): the rack sum of
    # the counters drops by 7's lifetime traffic. Rated per link, each restarted series counts its
    # new value across the restart, which is the traffic since; rating the sum would not.
    restart, gpu = TICKS - 4, 7
    base: dict[tuple[int, str], int] = {}

    def restarts(at: int, row: dict[str, Any]) -> None:
        for column in ("tx_kib", "rx_kib"):
            if at == restart - 1:
                base[row["link"], column] = row[column]
            elif at >= restart:
                row[column] -= base[row["link"], column]

    rec = record(tmp_path / "store", "steady", _link_counters(restart, gpu, restarts))
    said = surfaces(rec, tmp_path)
    expected = truth_nvlink_tb_s(rec)
    for surface in ("report", "report.html"):
        assert said[surface]["nvlink_tb_s"] == pytest.approx(expected, rel=0.005), (surface, said)
    # Two samples that straddle the restart (the snapshot's, and the live pair between the window's
    # ends): GPU 7 counts only what it carried since.
    lost = (rec.nvlink_kib[restart - 1][gpu] - rec.nvlink_kib[-1 - WINDOW_S][gpu]) * 1024 / 1e12 / WINDOW_S
    assert lost > 0
    for surface in ("live", "snapshot"):
        assert said[surface]["nvlink_tb_s"] == pytest.approx(expected - lost, rel=0.005), (surface, said)
    # The header, pair by pair: the sim's traffic in each second, the restart's included.
    builder = SnapshotBuilder()
    for tick in range(restart - 1, TICKS):
        header = builder.build(rec.frames[: tick + 1]).totals.nvlink_tbps
        assert header == pytest.approx(truth_nvlink_tb_s(rec, tick - 1, tick), rel=0.005), tick


def test_an_implausible_link_is_left_out_everywhere(tmp_path: Path) -> None:
    # Link 3 of GPU 5 jumps by 1 TB in one sample (a counter glitch): 100 GB/s over the window, above
    # the 53 GB/s line rate. Every surface leaves that link out of its sum and says so.
    glitch, gpu, link = TICKS - 3, 5, 3

    def jumps(at: int, row: dict[str, Any]) -> None:
        if at >= glitch and row["link"] == link:
            row["tx_kib"] += 1_000_000_000

    rec = record(tmp_path / "store", "steady", _link_counters(glitch, gpu, jumps), watch=(gpu, link))
    said = surfaces(rec, tmp_path)
    # The sim's traffic on that link over the window, which the sums leave out.
    left_out = (rec.link_kib[-1] - rec.link_kib[-1 - WINDOW_S]) * 1024 / 1e12 / WINDOW_S
    expected = truth_nvlink_tb_s(rec) - left_out
    for surface, figures in said.items():
        assert figures["nvlink_tb_s"] == pytest.approx(expected, rel=0.005), (surface, said)
    with StoreReader(rec.root) as reader:
        assert summarize(reader, rec.window)["nvlink"]["implausible_links"] == 1
        assert "(72/72 GPUs; 1 link implausible, left out)" in html.unescape(
            render_report(reader, rec.window)
        )
    ends = SnapshotBuilder().build([rec.frames[-1 - WINDOW_S], rec.frames[-1]])
    assert ends.totals.nvlink_text.endswith("(1 link implausible, left out)"), ends.totals.nvlink_text


def test_a_tray_silent_past_the_lookback_is_a_partial_total(tmp_path: Path) -> None:
    # Four missed ticks in a row are more than the 3-interval lookback: the header sums the 68 GPUs
    # that still answer and says so, and the sparkline leaves those ticks out rather than dipping.
    tick = TICKS - 5
    rec = record(tmp_path / "store", "steady", _tray_misses(tick, tray=5, ticks=4))
    live = SnapshotBuilder().build(rec.frames[: tick + 4])
    assert live.totals.power_covered == GPUS - 4
    assert live.totals.power_kw == pytest.approx(
        truth_power_kw(rec, tick + 3) - _tray_kw(rec, tick + 3, 5), rel=0.005
    )
    assert f"({GPUS - 4}/{GPUS} GPUs)" in totals_text(live, "rack").plain
    whole = [sum(p.values()) / 1e6 for p in rec.power_mw]
    assert min(live.power_history_kw) >= min(whole) * 0.995
