"""monitor report's counter figures equal a hand computation over the raw rows.

The store is two compacted hours (so the report reads 1 h and 1 min rollup buckets inside the window)
plus an open hour; the window starts mid-minute and ends mid-minute, and one GPU's energy counter and
one endpoint's token counter restart from zero inside it. The expected figures are computed from the raw
Parquet rows alone (tests/post/store_fixtures.py): each series' increase over its consecutive samples (a
drop means the counter restarted, so the new value is the increase), its rate over its samples' span,
then the sum.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pytest

from monitor.report import summarize
from monitor.timespec import Window
from storage.frame import Frame, batch_from_rows
from storage.reader import StoreReader
from tests.post.store_fixtures import per_series, raw_rows, write_store
from tests.storage.synth import T0, gpu_batch

STEP_MS = 5_000
TICKS = 150 * 60_000 // STEP_MS  # 2 h 30 min: two hours compacted, half an hour still open
GPU_RESET, ENDPOINT_RESET = 1_000, 700
"""Ticks at which GPU 2's energy counter and endpoint e1's tokens counter restart from zero."""


def _frame(tick: int) -> Frame:
    ts = T0 + tick * STEP_MS
    gpu = gpu_batch(ts, tick, 4)
    energy = [tick * 600_000 + g for g in range(4)]
    if tick >= GPU_RESET:
        energy[2] = (tick - GPU_RESET) * 550_000 + 7
    gpu = gpu.set_column(gpu.schema.get_field_index("energy_mj"), "energy_mj", pa.array(energy, pa.int64()))
    serving = []
    for e, gpus in (("e0", "0,1"), ("e1", "2,3")):
        tokens = tick * (900 + 37 * (tick % 3)) if e == "e0" else tick * 1_200
        if e == "e1" and tick >= ENDPOINT_RESET:
            tokens = (tick - ENDPOINT_RESET) * 800 + 3
        serving.append(
            {
                "ts": ts,
                "endpoint": e,
                "engine": "vllm",
                "gpus": gpus,
                "state": 0,
                "generation_tokens": tokens,
                "prompt_tokens": tick * 50,
            }
        )
    return Frame(ts, {"gpu": gpu, "serving": batch_from_rows("serving", serving)})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("exact") / "store", (_frame(tick) for tick in range(TICKS)))


def test_report_counters_equal_raw_rows_with_a_reset_inside(store: Path) -> None:
    since = T0 + 2 * 60_000 + 32_500  # mid-minute of the first compacted hour
    until = T0 + 2 * 3_600_000 + 11 * 60_000 + 17_000  # mid-minute of the open hour
    assert since < T0 + GPU_RESET * STEP_MS < until and since < T0 + ENDPOINT_RESET * STEP_MS < until
    with StoreReader(store) as reader:
        assert reader.manifest.of("gpu_1h"), "the hours must be compacted, so that rollups are read"
        summary = summarize(reader, Window(since, until))
    energy = per_series(raw_rows(store, "gpu", since, until), ("gpu",), "energy_mj")
    assert summary["energy"]["joules"] == pytest.approx(sum(i for i, _ in energy.values()) / 1000)
    serving = raw_rows(store, "serving", since, until)
    tokens = per_series(serving, ("endpoint", "engine"), "generation_tokens")
    prompt = per_series(serving, ("endpoint", "engine"), "prompt_tokens")
    got = summary["serving"]
    assert got["generated_tokens"] == pytest.approx(sum(i for i, _ in tokens.values()))
    assert got["prompt_tokens"] == pytest.approx(sum(i for i, _ in prompt.values()))
    assert got["tokens_per_s"] == pytest.approx(sum(i / s for i, s in tokens.values()))
    assert got["prompt_tokens_per_s"] == pytest.approx(sum(i / s for i, s in prompt.values()))
    # The restarts were counted as restarts: the lifetime totals never show up as new work.
    assert max(i for i, _ in energy.values()) < 600_000 * TICKS and math.isfinite(got["tokens_per_s"])
