"""Deterministic rack frames for store tests, built the way collectors build them (batch_from_columns)."""

from __future__ import annotations

import pyarrow as pa

from storage.frame import Frame, batch_from_columns

T0 = 1_735_689_600_000
"""2025-01-01 00:00:00 UTC, a day boundary, in epoch ms."""
GPUS = 72


def gpu_batch(ts_ms: int, tick: int, gpus: int = GPUS) -> pa.RecordBatch:
    """One gpu row per GPU: gauges that move with the tick, a monotonic energy counter."""
    ids = list(range(gpus))
    return batch_from_columns(
        "gpu",
        {
            "ts": [ts_ms] * gpus,
            "gpu": ids,
            "uuid": [f"GPU-{g:08x}" for g in ids],
            "tray": [g // 4 + 1 for g in ids],
            "state": [0] * gpus,
            "util_gpu_pct": [(tick + g) % 101 for g in ids],
            "mem_used_mib": [200_000 + (tick % 7) * 1024] * gpus,
            "mem_total_mib": [284_208] * gpus,
            "power_mw": [600_000 + ((tick * 37 + g * 11) % 5000) for g in ids],
            "power_limit_mw": [1_400_000] * gpus,
            "energy_mj": [tick * 600_000 + g for g in ids],
            "temp_gpu_c": [40 + (tick // 30 + g) % 20 for g in ids],
            "sm_clock_mhz": [2070] * gpus,
            "ecc_corrected": [0] * gpus,
            "nvlink_tx_kib": [tick * 1_000_000 + g for g in ids],
        },
    )


def hist_batch(ts_ms: int, tick: int) -> pa.RecordBatch:
    """One endpoint's ttft histogram: per tick 1 obs <= 0.1 s, 2 more <= 1 s, 1 more above."""
    return batch_from_columns(
        "serving_hist",
        {
            "ts": [ts_ms] * 3,
            "endpoint": ["vllm-0"] * 3,
            "metric": ["ttft"] * 3,
            "le": [0.1, 1.0, float("inf")],
            "count": [tick, 3 * tick, 4 * tick],
            "sum_s": [None, None, 1.5 * tick],
        },
    )


def frame(tick: int, step_ms: int = 1000, *, gpus: int = GPUS, hist: bool = False) -> Frame:
    """The rack frame of tick `tick` (ts = T0 + tick * step_ms)."""
    ts = T0 + tick * step_ms
    batches = {"gpu": gpu_batch(ts, tick, gpus)}
    if hist:
        batches["serving_hist"] = hist_batch(ts, tick)
    return Frame(ts, batches)
