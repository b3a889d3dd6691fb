"""The rack view model (no UI toolkit): RackSnapshot built from frames, and the selectable metrics."""

from __future__ import annotations

from monitor.view.builder import SnapshotBuilder, build_snapshot
from monitor.view.metrics import METRICS, METRICS_BY_KEY, METRICS_BY_NAME, Metric
from monitor.view.model import (
    NVLINK_MAX_TBPS,
    CellState,
    EventView,
    GpuView,
    RackSnapshot,
    RackTotals,
    SwitchTrayView,
)

__all__ = [
    "METRICS",
    "METRICS_BY_KEY",
    "METRICS_BY_NAME",
    "NVLINK_MAX_TBPS",
    "CellState",
    "EventView",
    "GpuView",
    "Metric",
    "RackSnapshot",
    "RackTotals",
    "SnapshotBuilder",
    "SwitchTrayView",
    "build_snapshot",
]
