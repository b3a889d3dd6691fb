"""Timing shared by every system: one warm-up call, then timed calls, with the load average beside them."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(run: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """One warm-up call, then `repeats` timed calls; returns (seconds per call, the last result)."""
    result = run()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - began)
    return times, result


def summary(times: list[float]) -> dict[str, Any]:
    """Median, min and max of timed runs in ms, and the 1-min load average when they ended."""
    return {
        "median_ms": statistics.median(times) * 1000,
        "min_ms": min(times) * 1000,
        "max_ms": max(times) * 1000,
        "runs": len(times),
        "load1": os.getloadavg()[0],
    }
