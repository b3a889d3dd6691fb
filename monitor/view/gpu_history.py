"""One GPU's history for the detail view: series over 5 min (the head) or 1 h / 24 h (the store's 1-minute
rollups, and raw rows for the hour in progress).

Series: power (W), GPU temperature (C), utilisation (%), SM clock (MHz) and NVLink TX+RX (GB/s), each a
list of (epoch ms, value or None) oldest first, plus the GPU's events in the same window so charts can
mark them. No UI toolkit here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from monitor.view.model import EventView, clock_text
from monitor.view.nvlink import KIB, gpu_nvlink_series
from storage.frame import Frame

if TYPE_CHECKING:
    from storage.reader import StoreReader

WINDOWS: dict[str, int] = {"5m": 300_000, "1h": 3_600_000, "24h": 86_400_000}
"""The detail view's chart windows, in ms."""

SERIES: tuple[tuple[str, str, str, float], ...] = (
    # (name, label, unit, scale from the store's integer unit)
    ("power", "Power", "W", 1 / 1000),
    ("temp", "GPU temp", "C", 1.0),
    ("util", "Util", "%", 1.0),
    ("clock", "SM clock", "MHz", 1.0),
    ("nvlink", "NVLink TX+RX", "GB/s", 1.0),
)
"""The charted series, in display order."""

_COLUMNS = {"power": "power_mw", "temp": "temp_gpu_c", "util": "util_gpu_pct", "clock": "sm_clock_mhz"}

Series = list[tuple[int, float | None]]


@dataclass(frozen=True, slots=True)
class GpuHistory:
    """The charts' data for one GPU and one window."""

    gpu: int
    window: str
    source: str
    """'head', or 'store 1m rollup' plus where raw rows took over (what an operator should know)."""
    since_ms: int
    until_ms: int
    series: dict[str, Series]
    events: tuple[EventView, ...]

    def values(self, name: str) -> list[float | None]:
        """One series' values, oldest first."""
        return [v for _, v in self.series.get(name, [])]


def history_from_frames(gpu: int, frames: Sequence[Frame], window: str = "5m") -> GpuHistory:
    """The GPU's series over the newest `window` of frames (oldest first)."""
    if not frames:
        return GpuHistory(gpu, window, "head", 0, 0, {n: [] for n, *_ in SERIES}, ())
    until = frames[-1].ts_ms
    since = until - WINDOWS[window]
    series: dict[str, Series] = {n: [] for n, *_ in SERIES}
    events: list[EventView] = []
    shown = [f for f in frames if f.ts_ms > since]
    for frame in shown:
        row = _gpu_row(frame, gpu)
        for name, col in _COLUMNS.items():
            raw = row.get(col) if row else None
            scale = next(s for n, _, _, s in SERIES if n == name)
            series[name].append((frame.ts_ms, raw * scale if raw is not None else None))
        events.extend(events_of(frame, gpu))
    # The sum of the GPU's link rates, as the heatmap, header and matrix compute it (monitor.view.nvlink);
    # the frame before the window gives the first point its rate.
    before = [f for f in frames if f.ts_ms <= since][-1:]
    series["nvlink"] = gpu_nvlink_series([*before, *shown], gpu)[len(before) :]
    return GpuHistory(gpu, window, "head", since, until, series, tuple(events))


def _gpu_row(frame: Frame, gpu: int) -> dict[str, Any] | None:
    batch = frame.batches.get("gpu")
    if batch is None or not batch.num_rows:
        return None
    gpus = batch.column("gpu").to_pylist()
    try:
        at = gpus.index(gpu)
    except ValueError:
        return None
    return batch.slice(at, 1).to_pylist()[0]


def events_of(frame: Frame, gpu: int | None = None) -> list[EventView]:
    """A frame's events in row order (those of one GPU when `gpu` is given)."""
    batch = frame.batches.get("events")
    if batch is None or not batch.num_rows:
        return []
    return [
        EventView(frame.ts_ms, r["kind"], r["gpu"], r["link"], r["code"], r["source"], r["detail"])
        for r in batch.to_pylist()
        if gpu is None or r["gpu"] == gpu
    ]


def history_from_store(reader: StoreReader, gpu: int, window: str, until_ms: int) -> GpuHistory:
    """The GPU's series over `window` ending at until_ms, in 1-minute buckets that start in the window.

    Closed hours come from the store's 1-minute rollups, the hour in progress from its raw rows (the
    reader rolls them the compactor's way: StoreReader.rollup), so the hour an incident is in shows.
    NVLink is the counters' per-minute rate through the reader's one counter primitive (exact over
    rollup buckets and raw rows, each sample pair counted once across their seam).
    """
    since = until_ms - WINDOWS[window]
    means = [f"{col}_mean" for col in _COLUMNS.values()]
    buckets, raw_from = reader.rollup_table("gpu", "1m", since, until_ms, means)
    rows = buckets.filter(pc.equal(buckets.column("gpu"), pa.scalar(gpu, buckets.schema.field("gpu").type)))
    rows = rows.to_pylist() if rows.num_rows else []
    series: dict[str, Series] = {n: [] for n, *_ in SERIES}
    for r in rows:
        for name, col in _COLUMNS.items():
            raw = r[f"{col}_mean"]
            scale = next(s for n, _, _, s in SERIES if n == name)
            series[name].append((int(r["t"]), raw * scale if raw is not None else None))
    first_bucket = -(-since // 60_000) * 60_000
    rates: dict[int, float] = {}
    for column in ("nvlink_tx_kib", "nvlink_rx_kib"):
        table = reader.rate("gpu", column, first_bucket, until_ms, step_ms=60_000)
        mine = table.filter(pc.equal(table.column("gpu"), gpu)).select(["ts", "rate"])
        for r in mine.to_pylist():
            if r["rate"] is not None:
                t = int(r["ts"].timestamp() * 1000) if hasattr(r["ts"], "timestamp") else int(r["ts"])
                rates[t] = rates.get(t, 0.0) + r["rate"] * KIB / 1e9
    series["nvlink"] = sorted(rates.items())
    ev = reader.sql(
        f"SELECT epoch_ms(ts) AS t, kind, gpu, link, code, source, detail FROM "
        f"{reader.relation('events', since, until_ms)} WHERE gpu = {int(gpu)} ORDER BY t"
    ).to_pylist()
    events = tuple(
        EventView(int(r["t"]), r["kind"], r["gpu"], r["link"], r["code"], r["source"], r["detail"])
        for r in ev
    )
    source = "store 1m rollup"
    if raw_from is not None:
        source = (
            f"store 1m rollup + raw rows from {clock_text(raw_from)}"
            if raw_from > since
            else "store raw rows"
        )
    return GpuHistory(gpu, window, source, since, until_ms, series, events)
