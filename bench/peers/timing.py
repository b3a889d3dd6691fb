"""Timing shared by every system: a warm-up call, then timed calls, with CPU and the load average."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Clock = Callable[[], float]
"""CPU seconds consumed so far by whatever does the work (a process, a server and its client)."""


def timed(
    run: Callable[[], Any], repeats: int, cpu: Clock = time.process_time
) -> tuple[list[float], Any, float]:
    """One warm-up call, then `repeats` timed calls.

    Returns:
        (wall seconds per call, the last result, CPU seconds per call on average over the timed calls:
        on a loaded machine the figure to compare, as waiting for a core does not count).
    """
    result = run()
    times = []
    cpu_began = cpu()
    for _ in range(repeats):
        began = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - began)
    return times, result, (cpu() - cpu_began) / max(repeats, 1)


def summary(times: list[float], cpu_s: float | None = None) -> dict[str, Any]:
    """Median, min and max of timed runs in ms, the mean CPU ms per run, and the 1-min load average."""
    return {
        "median_ms": statistics.median(times) * 1000,
        "min_ms": min(times) * 1000,
        "max_ms": max(times) * 1000,
        "cpu_ms": None if cpu_s is None else cpu_s * 1000,
        "runs": len(times),
        "load1": os.getloadavg()[0],
    }


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process (its threads included) from /proc/PID/stat, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command's closing parenthesis: state is field 3, utime and stime fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
