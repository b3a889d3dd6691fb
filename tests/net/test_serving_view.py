"""The serving view model (rates with resets, percentiles from bucket deltas, stale/down ages) and panel."""

from __future__ import annotations

import asyncio
import math

import pytest

from monitor.tui.app import RackApp
from monitor.tui.messages import FrameReady
from monitor.tui.widgets.serving_panel import ServingPanel, counts_text, serving_text, sparkline
from monitor.tui.widgets.totals import TotalsBar
from monitor.view.builder import SnapshotBuilder
from monitor.view.serving import ServingBuilder
from storage.frame import Frame, batch_from_rows
from storage.head import Head
from storage.schemas import EndpointState

T0 = 1_767_268_800_000
BOUNDS = (0.1, 0.25, 0.5, math.inf)


def frame(tick: int, *, down_from: int = 99, reset_at: int = 99) -> Frame:
    """Two servers: `a` makes 15,000 tok/s; `b` 5,000 tok/s, restarting at reset_at, DOWN from down_from."""
    ts = T0 + tick * 1000
    b_ticks = tick - reset_at if tick >= reset_at else tick + 100
    b_down = tick >= down_from
    rows = [
        {"ts": ts, "endpoint": "a", "engine": "vllm", "model": "m", "gpus": "0", "state": 0,
         "generation_tokens": 1_000_000 + 15_000 * tick, "prompt_tokens": 30_000 * tick,
         "running": 200, "waiting": 3, "kv_cache_q4": 8_100},
        {"ts": ts, "endpoint": "b", "engine": "sglang", "state": int(EndpointState.DOWN)} if b_down else
        {"ts": ts, "endpoint": "b", "engine": "sglang", "model": "m", "gpus": "1", "state": 0,
         "generation_tokens": 5_000 * b_ticks, "prompt_tokens": 10_000 * b_ticks,
         "running": 50, "waiting": 0, "kv_cache_q4": 2_000},
    ]  # fmt: skip
    hist = []
    # `a`: each tick adds 10 TTFT observations: 2 in (0, 0.1], 6 in (0.1, 0.25], 2 in (0.25, 0.5]
    for le, per_tick in zip(BOUNDS, (2, 8, 10, 10), strict=True):
        hist.append({"ts": ts, "endpoint": "a", "metric": "ttft", "le": le, "count": 50 + per_tick * tick})
    return Frame(
        ts,
        {"serving": batch_from_rows("serving", rows), "serving_hist": batch_from_rows("serving_hist", hist)},
    )


def test_rates_percentiles_and_states() -> None:
    frames = [frame(t, down_from=13, reset_at=6) for t in range(16)]
    snap = ServingBuilder(window_s=10).build(frames)
    a, b = snap.instances
    assert a.endpoint == "a" and a.state == "ok" and a.age_s is None
    assert a.tokens_per_s == pytest.approx(15_000)
    assert a.prompt_per_s == pytest.approx(30_000)
    assert (a.running, a.waiting, a.kv_cache) == (200, 3, 0.81)
    # rank 0.5 * 100 = 50 of the window's observations: (50 - 20) / 60 of the way through (0.1, 0.25]
    assert a.ttft_p50_s == pytest.approx(0.1 + 0.15 * 30 / 60)
    assert a.ttft_p99_s == pytest.approx(0.25 + 0.25 * 19 / 20)
    assert a.itl_p50_s is None  # no ITL histogram on the page
    assert b.state == "down" and b.age_s == 3.0 and b.tokens_per_s is None
    assert snap.tokens_per_s == pytest.approx(15_000)
    assert snap.counts == {"ok": 1, "partial": 0, "stale": 0, "down": 1, "gpu lost": 0, "stalled": 0}
    # history: both ok until tick 12; b's restart at tick 6 counts its new value, not a negative rate
    assert snap.tokens_history[0] == pytest.approx(20_000)
    assert snap.tokens_history[5] == pytest.approx(15_000 + 0)  # tick 5 -> 6: b restarts from 0
    assert snap.tokens_history[6] == pytest.approx(20_000)
    assert snap.tokens_history[-1] == pytest.approx(15_000)
    assert min(snap.tokens_history) >= 0


def test_restart_inside_the_window_is_not_a_negative_rate() -> None:
    frames = [frame(t, reset_at=10) for t in range(16)]
    b = ServingBuilder(window_s=10).build(frames).instances[1]
    # ticks 5..9 add 4 x 5,000; the restart at 10 starts from 0; ticks 11..15 reach 25,000: 45,000 in 10 s
    assert b.tokens_per_s == pytest.approx(4_500)


def test_no_serving_rows() -> None:
    snap = ServingBuilder().build([Frame(T0, {})])
    assert snap.ts_ms is None and snap.tokens_per_s is None


def test_panel_text_reads_without_colour() -> None:
    snap = ServingBuilder().build([frame(t, down_from=13) for t in range(16)])
    plain = serving_text(snap).plain
    lines = plain.splitlines()
    assert lines[0].startswith("generated     15.0k tok/s ")
    assert lines[2].startswith("server     state") and "TTFT p50/p99" in lines[2]
    assert lines[3].startswith("b          DOWN 3s ")  # problems first, with the age of the last sample
    assert lines[4].startswith("a          ok          15.0k  200    3  81%")
    assert counts_text(snap) == "1 ok, 1 down"
    assert sparkline([0, 5, 10]) == "▁▅█"
    assert sparkline([100, 100.5]) == "▄▄"  # steady is a flat line, not a full bar
    assert sparkline([0, 0]) == "  "


def test_a_partial_server_keeps_its_figures_and_says_partial() -> None:
    frames = [frame(t) for t in range(16)]
    for t in (14, 15):  # b's page had a NaN series: its row is PARTIAL, its counters still count
        serving = frames[t].batches["serving"].to_pylist()
        serving[1].update(state=int(EndpointState.PARTIAL), dup_samples=2)
        frames[t] = Frame(
            frames[t].ts_ms, {**frames[t].batches, "serving": batch_from_rows("serving", serving)}
        )
    snap = ServingBuilder(window_s=10).build(frames)
    _, b = snap.instances
    assert b.state == "partial" and b.age_s is None and b.dup_samples == 2
    assert b.tokens_per_s == pytest.approx(5_000) and b.running == 50
    assert snap.tokens_per_s == pytest.approx(20_000)
    assert snap.tokens_history[-1] == pytest.approx(20_000)  # not drawn as a dip
    assert counts_text(snap) == "1 ok, 1 partial"
    lines = serving_text(snap).plain.splitlines()
    assert lines[3].startswith("b          part dup2    5.0k   50    0  20%")


class _App(RackApp):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.arrived = asyncio.Event()

    def on_frame_ready(self, message: FrameReady) -> None:
        self.arrived.set()


async def test_panel_and_totals_in_the_app() -> None:
    head = Head()
    for t in range(16):
        head.append(frame(t, down_from=13))
    app = _App(head, interval=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.arrived.wait(), 30)
        await pilot.pause()
        panel = app.query_one(ServingPanel)
        assert panel.display
        assert "DOWN 3s" in str(panel.render())
        assert panel.border_subtitle == "1 ok, 1 down"
        assert "Tokens 15.0 k/s" in str(app.query_one(TotalsBar).render())


def _stand_in(f: Frame) -> Frame:
    """The frame with every server a STALE stand-in (no page at this tick: the scrape still running)."""
    rows = [
        {"ts": r["ts"], "endpoint": r["endpoint"], "engine": r["engine"], "state": int(EndpointState.STALE)}
        for r in f.table("serving").to_pylist()
    ]
    return Frame(f.ts_ms, {"serving": batch_from_rows("serving", rows)})


def test_stand_ins_every_other_tick_keep_the_servers_on_screen() -> None:
    # A loaded collector answers every other tick: the servers keep their last page's figures and
    # rates (a lookback within 3 intervals), and the live header's tokens/s still covers both.
    frames = [_stand_in(frame(t)) if t % 2 else frame(t) for t in range(16)]
    snap = ServingBuilder(window_s=10).build(frames)
    a, b = snap.instances
    assert (a.state, b.state) == ("ok", "ok")
    assert a.tokens_per_s == pytest.approx(15_000) and b.tokens_per_s == pytest.approx(5_000)
    assert snap.counts == {"ok": 2, "partial": 0, "stale": 0, "down": 0, "gpu lost": 0, "stalled": 0}
    rack = SnapshotBuilder().build(frames).totals
    assert rack.tokens_per_s == pytest.approx(20_000)
    assert (rack.tokens_covered, rack.endpoints) == (2, 2)


def test_stand_ins_past_the_lookback_are_stale() -> None:
    frames = [_stand_in(frame(t)) if t >= 10 else frame(t) for t in range(16)]
    a, _ = ServingBuilder(window_s=10).build(frames).instances
    assert a.state == "stale" and a.age_s == 6.0 and a.tokens_per_s is None
    assert SnapshotBuilder().build(frames).totals.tokens_per_s is None
