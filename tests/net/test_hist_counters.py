"""Latency histograms per series, end to end: two vLLM engines' TTFT buckets over real HTTP into a real store.

A vLLM server with two data-parallel engines prints one bucket series per (engine, le). Engine 1
restarts after scrape 2 (its buckets go back to small values) while engine 0 keeps counting from a
large lifetime count. The stored serving_hist rows must increase, scrape to scrape, by the per-engine
increases written below (engine 1's reset counts only its new observations), and the p50/p90 the
reader and `monitor report` compute over the window must be the hand-computed ones. Summing the two
engines' buckets before taking the increase (the old fault) reads engine 1's reset as a reset of the
summed buckets and counts engine 0's whole lifetime as new observations, so these figures fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import pytest

from collectors.config import ServerTarget
from collectors.scrape import ScrapeSource
from monitor.report import summarize
from monitor.timespec import Window
from storage.quantile import bucket_quantile
from storage.reader import StoreReader
from storage.writer import StoreWriter
from tests.net.test_series_counters import T0, SequenceServer

LES = ("0.1", "0.5", "1.0", "+Inf")
BOUNDS = (0.1, 0.5, 1.0, float("inf"))
# Per scrape: engine 0 sees 10 requests <= 0.1 s, 10 in (0.1, 0.5], none slower; engine 1 sees
# 5 in (0.5, 1] and 1 above 1 s. Cumulative per bucket, as the page prints them:
ENGINE0_START = (1000.0, 3000.0, 3500.0, 3600.0)
ENGINE0_STEP = (10.0, 20.0, 20.0, 20.0)
ENGINE1_START = (100.0, 200.0, 300.0, 400.0)
ENGINE1_STEP = (0.0, 0.0, 5.0, 6.0)
SUM_STEP = {"0": 2.5, "1": 4.75}
"""Seconds added to each engine's _sum per scrape."""
SCRAPES = 6
RESTART = 3
"""Engine 1 restarted between scrapes 2 and 3: at scrape 3 it shows one scrape's observations."""


def engine_buckets(engine: str, i: int) -> tuple[list[float], float]:
    """Engine's cumulative bucket counts and _sum at scrape i."""
    if engine == "0":
        return [s + i * d for s, d in zip(ENGINE0_START, ENGINE0_STEP, strict=True)], 50_000 + i * SUM_STEP[
            "0"
        ]
    if i < RESTART:
        return [s + i * d for s, d in zip(ENGINE1_START, ENGINE1_STEP, strict=True)], 900 + i * SUM_STEP["1"]
    since = i - RESTART + 1
    return [since * d for d in ENGINE1_STEP], since * SUM_STEP["1"]


def ttft_page(i: int) -> str:
    """vLLM's TTFT histogram of both engines at scrape i (prometheus_client's layout)."""
    name = "vllm:time_to_first_token_seconds"
    lines = [f"# HELP {name} Histogram of time to first token in seconds.", f"# TYPE {name} histogram"]
    for engine in ("0", "1"):
        counts, total = engine_buckets(engine, i)
        labels = f'engine="{engine}",model_name="m"'
        lines += [f'{name}_bucket{{{labels},le="{le}"}} {c}' for le, c in zip(LES, counts, strict=True)]
        lines += [f"{name}_count{{{labels}}} {counts[-1]}", f"{name}_sum{{{labels}}} {total}"]
    return "\n".join(lines) + "\n"


def collect(tmp_path: Path) -> StoreReader:
    """Scrape the pages 1 s apart through ScrapeSource into a StoreWriter; a reader on the store."""
    pages = [ttft_page(i) for i in range(SCRAPES)]
    with SequenceServer({"vllm": pages}) as server:
        writer = StoreWriter(tmp_path / "store", compaction="off")
        source = ScrapeSource([], [ServerTarget("vllm-0", server.url("vllm"), engine="vllm")], timeout_s=5.0)
        try:
            for i in range(SCRAPES):
                writer.append(source.poll(T0 + 1000 * i))
            writer.flush()
        finally:
            source.close()
            writer.close()
    return StoreReader(tmp_path / "store")


def stored(reader: StoreReader) -> dict[int, list[tuple[float, int, float | None]]]:
    """ts -> [(le, count, sum_s)] ascending in le, of the ttft rows."""
    out: dict[int, list[tuple[float, int, float | None]]] = {}
    query = (
        "SELECT epoch_ms(ts) AS t, le, count, sum_s FROM serving_hist WHERE metric = 'ttft' ORDER BY t, le"
    )
    for r in reader.sql(query).to_pylist():
        out.setdefault(r["t"], []).append((r["le"], r["count"], r["sum_s"]))
    return out


def step(before: Sequence[float], after: Sequence[float]) -> list[float]:
    """A reader's ordinary per-row increase of stored columns (a fall is a reset)."""
    return [v - p if v >= p else v for p, v in zip(before, after, strict=True)]


def test_one_engine_restart_counts_only_its_new_observations(tmp_path: Path) -> None:
    with collect(tmp_path) as reader:
        rows = stored(reader)
        assert len(rows) == SCRAPES
        assert all([le for le, _, _ in r] == list(BOUNDS) for r in rows.values())
        counts = [[c for _, c, _ in r] for r in rows.values()]
        sums = [r[-1][2] for r in rows.values()]
        # First sight counts nothing; then each scrape adds engine 0's 10/20/20/20 and engine 1's
        # 0/0/5/6, whether or not engine 1 restarted just before it.
        assert counts[0] == [0, 0, 0, 0]
        assert [step(a, b) for a, b in pairwise(counts)] == [[10, 20, 25, 26]] * (SCRAPES - 1)
        assert [b - a for a, b in pairwise(sums)] == pytest.approx([2.5 + 4.75] * (SCRAPES - 1))
        # Cumulative in le on every row: histogram_quantile needs nothing patched.
        assert all(c == sorted(c) for c in counts)

        window = (T0, T0 + 1000 * (SCRAPES - 1))
        # Over the window: 50 / 100 / 125 / 130 observations at le 0.1 / 0.5 / 1 / +Inf.
        # p50: rank 65 lies in (0.1, 0.5]: 0.1 + 0.4 * (65 - 50) / (100 - 50) = 0.22 s.
        # p90: rank 117 lies in (0.5, 1]: 0.5 + 0.5 * (117 - 100) / (125 - 100) = 0.84 s.
        buckets: dict[float, float] = {}
        for r in reader.rate("serving_hist", "count", *window).to_pylist():
            if r["metric"] == "ttft":
                buckets[r["le"]] = buckets.get(r["le"], 0.0) + r["increase"]
        assert bucket_quantile(0.5, sorted(buckets.items())) == pytest.approx(0.22)
        assert bucket_quantile(0.9, sorted(buckets.items())) == pytest.approx(0.84)
        latency = summarize(reader, Window(*window))["serving"]["latency"]["ttft"]
        assert (latency["p50"], latency["p90"]) == (pytest.approx(0.22), pytest.approx(0.84))
