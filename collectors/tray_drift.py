"""Tray thermal drift: a compute tray whose GPUs warm up against the rest of the rack while their power
does not rise, the early sign of a cooling fault (a tray's coolant flow degrading).

A GPU's temperature is coolant plus thermal resistance times power, so the margin to slowdown falls
late: on a degrading tray it is still 15-20 C when the tray has already warmed several degrees more
than the rack. Each GPU is taken against the rack's median of the same sample (a room or a facility
loop warming moves every tray and cancels), and against its own value `window_s` ago (trays differ
by a few degrees when healthy: only a change counts). A tray that warms because it does more work is
no cooling fault: its power rose with its temperature, and the drift is then not counted.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from typing import Any

from storage.frame import Frame
from storage.schemas import GpuState

POWER_EXPLAINS_W = 100.0
"""A tray whose GPUs' power rose this much (per GPU, against the rack's median) warmed from work."""
MIN_BASELINE_S = 10.0
"""A drift needs a baseline at least this old: right after start there is nothing to drift from."""

Observation = tuple[str, tuple[Any, ...], float, dict[str, Any], str]
"""(rule, key, value, event columns, detail), as collectors.alerts evaluates them."""


def tray_source(tray: int) -> str:
    """How a tray-level alert names its tray: 'T05', as the heatmap labels the row."""
    return f"T{tray:02d}"


class TrayDrift:
    """Follows the gpu rows of each frame and yields, per compute tray, its drift in C over the window."""

    def __init__(self, window_s: float) -> None:
        """Measure drift over `window_s` seconds."""
        self.window_ms = int(window_s * 1000)
        self._samples: deque[tuple[int, dict[int, tuple[float, float]]]] = deque()
        """(ts, gpu -> (temperature, power) against the rack's median at ts), oldest first."""
        self._tray_of: dict[int, int] = {}

    def observe(self, frame: Frame) -> Iterable[Observation]:
        """The tray_drift observation of every compute tray with a baseline (after recording `frame`)."""
        gpu = frame.table("gpu")
        if not gpu.num_rows:
            return
        cols = gpu.select(["gpu", "tray", "state", "temp_gpu_c", "power_mw"]).to_pydict()
        readings = {
            g: (float(temp), power / 1000)
            for g, tray, state, temp, power in zip(*cols.values(), strict=True)
            if state == GpuState.OK and temp is not None and power is not None and tray
        }
        self._tray_of.update((g, t) for g, t in zip(cols["gpu"], cols["tray"], strict=True) if t)
        if len(readings) < 3:
            return
        temp_median = statistics.median(t for t, _ in readings.values())
        power_median = statistics.median(p for _, p in readings.values())
        now = {g: (t - temp_median, p - power_median) for g, (t, p) in readings.items()}
        self._samples.append((frame.ts_ms, now))
        while self._samples[0][0] < frame.ts_ms - self.window_ms:
            self._samples.popleft()
        base_ts, base = self._samples[0]
        if frame.ts_ms - base_ts < MIN_BASELINE_S * 1000:
            return
        yield from self._trays(now, base, (frame.ts_ms - base_ts) / 1000, temp_median)

    def _trays(
        self,
        now: dict[int, tuple[float, float]],
        base: dict[int, tuple[float, float]],
        span_s: float,
        temp_median: float,
    ) -> Iterable[Observation]:
        by_tray: dict[int, list[tuple[float, float]]] = {}
        for g, (temp, power) in now.items():
            if g in base:
                by_tray.setdefault(self._tray_of[g], []).append((temp - base[g][0], power - base[g][1]))
        for tray, changes in sorted(by_tray.items()):
            warmed = statistics.mean(t for t, _ in changes)
            powered = statistics.mean(p for _, p in changes)
            value = warmed if powered < POWER_EXPLAINS_W else 0.0
            detail = (
                f"GPUs {warmed:+.1f} C against the rack median in {span_s:.0f} s, power {powered:+.0f} W"
                f" (rack median {temp_median:.0f} C)"
            )
            yield "tray_drift", ("tray", tray), value, {"source": tray_source(tray)}, detail
