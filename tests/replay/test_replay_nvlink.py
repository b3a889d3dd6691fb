"""Replay agrees with live on NVLink: at a cursor, the header's total == the sum over GPUs == the sum
over the `l` matrix's switch columns == what the simulator put on its links over that tick."""

from __future__ import annotations

import asyncio

import pytest

from collectors.rack import LINKS_PER_GPU
from monitor.backfill import SimFrames
from monitor.tui.screens.nvlink import NvlinkScreen
from monitor.tui.widgets.totals import TotalsBar
from tests.replay.conftest import END_S, SCENARIO, SECONDS, SEED
from tests.replay.observed import replay_app

START_S = END_S - SECONDS + 1
AT_TICK = 120
"""The cursor: 15:05:21, tick 120 of the backfill (the straggler is braked by then)."""


def simulator_rack_gbps(tick: int) -> float:
    """The rack's TX + RX GB/s over the tick ending at `tick`, from the simulator's own link counters:
    the backfill's rack (same seed, scenario and clock) replayed to that tick."""
    sim = SimFrames(SEED, SCENARIO, START_S)
    try:
        moved: list[float] = []
        for _ in range(tick + 1):
            next(sim)
            moved.append(
                sum(
                    g.links.read_link_tx(k) + g.links.read_link_rx(k)
                    for g in sim.rack.gpus
                    for k in range(LINKS_PER_GPU)
                )
            )
    finally:
        sim.close()
    return (moved[tick] - moved[tick - 1]) * 1024 / 1e9


async def shown_matrix(app, pilot) -> NvlinkScreen:
    for _ in range(3000):
        await pilot.pause()
        screen = app.screen
        if isinstance(screen, NvlinkScreen) and screen.models_shown >= 1:
            return screen
        await asyncio.sleep(0.01)  # the matrix is built in a thread worker
    raise AssertionError("the NVLink matrix never drew")


async def test_replay_header_equals_gpus_equals_switch_columns_equals_the_simulator(store):
    truth_gbps = simulator_rack_gbps(AT_TICK)
    app = replay_app(store, at="15:05:21")
    async with app.run_test(size=(200, 50)) as pilot:
        await app.settle(pilot)
        snap = app.snapshot
        assert snap.ts_ms == (START_S + AT_TICK) * 1000
        header = str(app.query_one(TotalsBar).render())
        await pilot.press("l")
        matrix = (await shown_matrix(app, pilot)).matrix
    rack_tbps = snap.totals.nvlink_tbps
    assert rack_tbps is not None and rack_tbps > 0
    assert rack_tbps * 1000 == pytest.approx(truth_gbps, rel=1e-6)  # counters are whole KiB
    assert sum(g.values["nvlink"] for g in snap.gpus) / 1000 == pytest.approx(rack_tbps, rel=1e-12)
    assert sum(s.gbps for s in snap.switches) / 1000 == pytest.approx(rack_tbps, rel=1e-12)
    assert sum(c.gbps for c in matrix.columns) / 1000 == pytest.approx(rack_tbps, rel=1e-12)
    # The header writes the same figure, rounded as every rate is (two decimals under 10 TB/s), and
    # covers the whole rack (no "(n/72 GPUs)").
    assert f"NVLink {truth_gbps / 1000:.2f} TB/s " in header, header
    assert "GPUs)" not in header.split("NVLink ")[1].split("  ")[0]
