"""The GPU detail's 1 h / 24 h history includes the hour in progress, live (writer's head) and in replay.

Rollup files appear only when an hour is compacted; the open hour's buckets are rolled from its raw rows.
Stores here are written by the real StoreWriter (inline compaction, so a closed hour really has its
rollup files); expected values are computed in the test from the samples fed to the writer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

from monitor.tui.screens.gpu_detail import GpuDetailScreen
from monitor.tui.widgets.history_chart import HistoryChart
from monitor.view.gpu_history import history_from_store
from storage import counter_rates
from storage.frame import Frame, batch_from_columns
from storage.layout import HOUR_MS, read_manifest
from storage.reader import StoreReader
from storage.writer import StoreWriter
from tests.replay.observed import replay_app
from tests.storage.synth import T0

GPUS = 4
MINUTE = 60_000
HOUR = T0 + 5 * HOUR_MS
"""The open hour's start: 05:00Z on the synth day."""
KIB_GB = 1024 / 1e9

Sample = dict[str, int]


def samples(first_ms: int, count: int, seed: int) -> list[tuple[int, list[Sample]]]:
    """(ts, one row per GPU) at 1 s, half a second off the minute; NVLink counters reset now and then."""
    rng = random.Random(seed)
    tx = [rng.randrange(10**9) for _ in range(GPUS)]
    rx = [rng.randrange(10**9) for _ in range(GPUS)]
    out = []
    for n in range(count):
        rows = []
        for g in range(GPUS):
            tx[g] = (
                rng.randrange(1000) if rng.random() < 0.01 else tx[g] + rng.randrange(5_000_000, 15_000_000)
            )
            rx[g] += rng.randrange(1_000_000, 9_000_000)
            rows.append(
                {
                    "power_mw": rng.randrange(200_000, 1_400_000),
                    "temp_gpu_c": rng.randrange(30, 90),
                    "nvlink_tx_kib": tx[g],
                    "nvlink_rx_kib": rx[g],
                }
            )
        out.append((first_ms + n * 1000, rows))
    return out


def frame_of(ts: int, rows: list[Sample]) -> Frame:
    columns: dict[str, list] = {
        "ts": [ts] * GPUS,
        "gpu": list(range(GPUS)),
        "uuid": [f"GPU-{g}" for g in range(GPUS)],
        "tray": [1] * GPUS,
        "state": [0] * GPUS,
    }
    for name in rows[0]:
        columns[name] = [r[name] for r in rows]
    return Frame(ts, {"gpu": batch_from_columns("gpu", columns)})


def expected(data: list[tuple[int, list[Sample]]], gpu: int) -> tuple[dict[int, float], dict[int, float]]:
    """Per-minute mean power (W) and NVLink TX+RX (GB/s) of one GPU, by hand from the samples.

    A counter's increase between consecutive samples is the difference, or the new value where it went
    down (a reset); each pair counts in the minute of its later sample, and a minute's rate is its
    pairs' increase over their seconds (Prometheus' rate without extrapolation), TX and RX added.
    """
    power: dict[int, list[float]] = defaultdict(list)
    for ts, rows in data:
        power[ts // MINUTE * MINUTE].append(rows[gpu]["power_mw"] / 1000)
    nvlink: dict[int, float] = defaultdict(float)
    for column in ("nvlink_tx_kib", "nvlink_rx_kib"):
        inc: dict[int, float] = defaultdict(float)
        secs: dict[int, float] = defaultdict(float)
        for (t0, a), (t1, b) in pairwise(data):
            before, after = a[gpu][column], b[gpu][column]
            minute = t1 // MINUTE * MINUTE
            inc[minute] += after - before if after >= before else after
            secs[minute] += (t1 - t0) / 1000
        for minute in inc:
            nvlink[minute] += inc[minute] / secs[minute] * KIB_GB
    return {m: sum(v) / len(v) for m, v in power.items()}, dict(nvlink)


def write(store: Path, data: list[tuple[int, list[Sample]]]) -> StoreWriter:
    """A real writer that has taken every sample; the last few seconds still only in its head."""
    writer = StoreWriter(store, flush_interval_s=10, compaction="inline")
    for ts, rows in data:
        writer.append(frame_of(ts, rows))
    return writer


def raw_from(store: Path) -> str:
    """HH:MM:SSZ where the store's gpu 1 min rollups end, from its manifest: the open hour's sealed minutes
    are rolled once they lag (storage.compactor.ROLL_LAG_MS), so a chart reads raw rows only past them."""
    bound = counter_rates.rolled_bounds(read_manifest(store), "gpu")["1m"]
    return time.strftime("%H:%M:%SZ", time.gmtime(bound / 1000))


def check(reader: StoreReader, data: list[tuple[int, list[Sample]]], window: str, until: int) -> str:
    """Assert every GPU's power and NVLink series equal the hand computation; return the source."""
    source = ""
    for gpu in range(GPUS):
        history = history_from_store(reader, gpu, window, until)
        power, nvlink = expected(data, gpu)
        got_power = dict(history.series["power"])
        assert len(got_power) == len(history.series["power"])  # no minute twice
        assert list(got_power) == sorted(power)  # every minute, none missing
        assert got_power == pytest.approx(power, rel=1e-9)
        assert dict(history.series["nvlink"]) == pytest.approx(nvlink, rel=1e-9)
        source = history.source
    return source


@pytest.mark.parametrize("window", ["1h", "24h"])
def test_three_minutes_of_an_open_hour_show_live_and_after_the_writer_closed(tmp_path, window):
    data = samples(HOUR + 500, 180, seed=3)
    until = data[-1][0]
    writer = write(tmp_path / "s", data)
    try:
        assert writer.status.pending_rows > 0  # the newest rows are in the head only
        assert raw_from(tmp_path / "s") == "05:02:00Z"  # 05:00 and 05:01 are sealed and lag 2 min
        with StoreReader(tmp_path / "s", head=writer.head) as live:
            assert "1m rollup + raw rows from 05:02:00Z" in check(live, data, window, until)
    finally:
        writer.close()
    with StoreReader(tmp_path / "s") as replayed:
        check(replayed, data, window, until)


@pytest.mark.parametrize("window", ["1h", "24h"])
def test_a_window_across_a_closed_and_an_open_hour_has_no_gap_and_no_double_count(tmp_path, window):
    data = samples(HOUR - 20 * MINUTE + 500, 23 * 60, seed=4)
    until = data[-1][0]
    writer = write(tmp_path / "s", data)
    try:
        rollups = [f for f in writer.live.current.files if f.table == "gpu_1m" and f.level == "hour"]
        assert rollups and max(f.max_ts for f in rollups) < HOUR  # the closed hour is rolled up on disk
        assert raw_from(tmp_path / "s") == "05:02:00Z"  # the open hour's sealed minutes, rolled as they lag
        with StoreReader(tmp_path / "s", head=writer.head) as live:
            assert check(live, data, window, until) == "store 1m rollup + raw rows from 05:02:00Z"
    finally:
        writer.close()
    with StoreReader(tmp_path / "s") as replayed:
        check(replayed, data, window, until)


async def test_replay_detail_1h_window_charts_the_open_hour(store):
    # The replay store holds 200 s of one hour that never closed: its sealed minutes' rollups only.
    app = replay_app(store, at="end")
    async with app.run_test(size=(200, 50)) as pilot:
        await app.settle(pilot)
        app.open_gpu_detail(5)
        await pilot.press("w")
        title = header = ""
        for _ in range(400):
            await pilot.pause()
            screen = app.screen
            if isinstance(screen, GpuDetailScreen) and screen.models_shown:
                title = str(screen.query_one("#detail-title").render())
                header = screen.query_one("#chart-power", HistoryChart).render_line(0).text
                if "window 1h" in title:
                    break
            await asyncio.sleep(0.01)  # the model is built in a thread worker
        assert raw_from(store) == "15:06:00Z"  # 15:03 to 15:05 rolled (15:03:21 to 15:06:40 sealed)
        assert "window 1h from store 1m rollup + raw rows from 15:06:00Z" in title
        assert header.startswith("Power (W)  now ") and "min --" not in header and "max --" not in header, (
            header
        )
