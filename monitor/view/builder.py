"""Build RackSnapshots from frames: per-GPU state and values, counter rates with reset detection, totals.

The same builder serves live (the head's newest frames) and replay (frames read at a cursor). It keeps a
small cache of per-frame and per-frame-pair summaries (monitor.view.frame_summary) so that each new tick
costs one frame's work, not a whole window's. One builder belongs to one thread.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from collectors.rack import CHIPS_PER_SWITCH_TRAY, GPUS, LINKS_PER_GPU, SWITCH_TRAYS
from monitor.view.frame_summary import (
    FrameSummary,
    PairSummary,
    link_trouble,
    nvlink_history,
    sum_known,
    summarise_frame,
    summarise_pair,
    thin_frame,
    thin_pair,
)
from monitor.view.layout import RACK, GpuLayout
from monitor.view.lookback import freshest, interval_ms
from monitor.view.metrics import MIB_PER_GIB
from monitor.view.model import (
    CellState,
    EventView,
    GpuView,
    RackSnapshot,
    RackTotals,
    SwitchTrayView,
    clock_reason_names,
)
from monitor.view.nvlink import rack_nvlink_text
from monitor.view.totals import power_history, rack_tokens
from storage.frame import Frame
from storage.rack_total import power_total_kw
from storage.schemas import GpuState

NVLINK_ACTIVE = 1
"""NVML_NVLINK_STATE_ACTIVE as stored in nvlink.state."""

_STATE = {
    GpuState.OK: CellState.OK,
    GpuState.LOST: CellState.LOST,
    GpuState.STALE: CellState.STALE,
    GpuState.ERROR: CellState.ERROR,
}


class SnapshotBuilder:
    """Turns the newest frames (oldest first) into a RackSnapshot, caching per-frame work."""

    def __init__(
        self,
        *,
        history: int = 120,
        events: int = 50,
        error_window_s: float = 60.0,
        interval_ms: int | None = None,
        stale_intervals: int = 3,
        rate_window_s: float = 10.0,
        layout: GpuLayout = RACK,
    ) -> None:
        """Configure the builder.

        Args:
            history: frames of rack power / NVLink history kept for sparklines.
            events: the most events a snapshot carries.
            error_window_s: the 'errors' metric is the counter increase over this window.
            interval_ms: the collection interval; None infers it from the frames' spacing.
            stale_intervals: a row older than this many intervals behind the newest frame is stale.
            rate_window_s: rack tokens/s is each endpoint's rate over this window, summed.
            layout: the GPUs that exist (the rack, or this host's): the ones drawn and counted.
        """
        self.layout = layout
        self._held = frozenset(layout.gpus)
        self.history = history
        self.max_events = events
        self.error_window_ms = int(error_window_s * 1000)
        self.interval_ms = interval_ms
        self.stale_intervals = stale_intervals
        self.rate_window_ms = int(rate_window_s * 1000)
        self._frames: dict[int, FrameSummary] = {}
        self._pairs: dict[tuple[int, int], PairSummary] = {}

    def frames_needed(self) -> int:
        """How many of the newest frames build() wants (history plus one for the first rate)."""
        return self.history + 1

    def _summary(self, frame: Frame, full: bool = True) -> FrameSummary:
        cached = self._frames.get(frame.ts_ms)
        if cached is None or (full and cached.thin):  # thinned, but back in the window (a replay seek)
            cached = self._frames[frame.ts_ms] = summarise_frame(frame)
        return cached

    def _pair(self, old_frame: Frame, old: FrameSummary, new: FrameSummary) -> PairSummary:
        key = (old.ts_ms, new.ts_ms)
        cached = self._pairs.get(key)
        if cached is None:
            if old.thin:  # a pair the cache lacks (frames replaced): the old frame's links again
                old = summarise_frame(old_frame)
            cached = self._pairs[key] = summarise_pair(old, new)
        return cached

    def _thin(self, summaries: list[FrameSummary], pairs: list[PairSummary], whole: Sequence[bool]) -> None:
        """Thin, in place and in the cache, the summaries not `whole` and every pair but the newest.

        A GPU's cell reads its newest row within the freshness window (_newest_row); older rows are read
        only for their state, and a frame's links only for its pair with the next frame, computed by
        now. This keeps the cache at ~15 KB a frame for the rack, not ~600 KB.
        """
        for pos in range(len(summaries) - 1, -1, -1):
            if not whole[pos] and not summaries[pos].thin:
                summaries[pos] = self._frames[summaries[pos].ts_ms] = thin_frame(summaries[pos])
        for pos in range(len(pairs) - 2, -1, -1):
            if pairs[pos].nvlink is None or not pairs[pos].nvlink.links:  # type: ignore[union-attr]
                continue
            key = (summaries[pos].ts_ms, summaries[pos + 1].ts_ms)
            pairs[pos] = self._pairs[key] = thin_pair(pairs[pos])

    def _infer_interval(self, frames: Sequence[Frame] | Sequence[FrameSummary]) -> int:
        if self.interval_ms is not None:
            return self.interval_ms
        return interval_ms([f.ts_ms for f in frames[-11:]])

    def build(self, frames: Sequence[Frame], *, version: int = 0) -> RackSnapshot:
        """The snapshot at the newest of `frames` (oldest first; only the newest history+1 are used)."""
        frames = list(frames[-self.frames_needed() :])
        if not frames:
            return RackSnapshot.empty()
        interval = self._infer_interval(frames)
        fresh_ms = self.stale_intervals * interval
        # Frames within the freshness window (and the one at its edge) are read whole; older ones thin.
        whole = [b.ts_ms >= frames[-1].ts_ms - fresh_ms for b in frames[1:]] + [True]
        summaries = [self._summary(f, full) for f, full in zip(frames, whole, strict=True)]
        pairs = [self._pair(frames[i], a, b) for i, (a, b) in enumerate(itertools.pairwise(summaries))]
        self._forget(summaries)
        self._thin(summaries, pairs, whole)
        newest = summaries[-1]
        window = [
            p
            for s, p in zip(summaries[1:], pairs, strict=True)
            if s.ts_ms > newest.ts_ms - self.error_window_ms
        ]
        # Slots the layout does not hold (the rest of a rack on a host) stay empty and count for nothing.
        gpus = tuple(
            self._gpu_view(i, summaries, pairs, window, interval)
            if i in self._held
            else GpuView(i, CellState.NO_DATA)
            for i in range(GPUS)
        )
        return RackSnapshot(
            ts_ms=newest.ts_ms,
            interval_ms=interval,
            gpus=gpus,
            switches=self._switches(newest, pairs[-1] if pairs else None, window),
            totals=self._totals(gpus, pairs[-1] if pairs else None, summaries),
            power_history_kw=power_history([s.power for s in summaries[-self.history :]]),
            # A pair that covers fewer GPUs than the newest would draw as a dip: it is left out.
            nvlink_history_tbps=nvlink_history(pairs[-self.history :]),
            events=self._events(frames),
            version=version,
            layout=self.layout,
            links=link_trouble(newest, window),
        )

    def _forget(self, kept: Sequence[FrameSummary]) -> None:
        """Drop cached summaries of frames that fell out of the window (keeps memory bounded)."""
        if len(self._frames) <= len(kept):
            return
        keep = {s.ts_ms for s in kept}
        self._frames = {ts: s for ts, s in self._frames.items() if ts in keep}
        self._pairs = {k: p for k, p in self._pairs.items() if k[0] in keep and k[1] in keep}

    def _gpu_view(
        self,
        index: int,
        summaries: Sequence[FrameSummary],
        pairs: Sequence[PairSummary],
        window: Sequence[PairSummary],
        interval_ms: int,
    ) -> GpuView:
        newest_ts = summaries[-1].ts_ms
        name = self.layout.name(index)
        found = _newest_row(index, summaries, self.stale_intervals * interval_ms)
        if found is None:
            return GpuView(index, CellState.NO_DATA, name=name)
        pos, row = found
        state = _STATE.get(GpuState(row["state"]), CellState.ERROR)
        row_ts = summaries[pos].ts_ms
        age_s: float | None = None
        if state is CellState.STALE or newest_ts - row_ts > self.stale_intervals * interval_ms:
            state = CellState.STALE
            good = next((s.ts_ms for _, s in _newest_first(summaries) if _reported(s.rows.get(index))), None)
            age_s = (newest_ts - good) / 1000 if good is not None else None
        rates = pairs[pos - 1].nvlink if pos > 0 else None
        nvlink = rates.gpu_gbps[index] if rates is not None else None
        errors = sum_known([p.gpu_errors.get(index) for p in window])
        values = {
            "util": _num(row.get("util_gpu_pct")),
            "power": _scaled(row.get("power_mw"), 1000),
            "temp": _num(row.get("temp_gpu_c")),
            "mem": _scaled(row.get("mem_used_mib"), MIB_PER_GIB),
            "clock": _num(row.get("sm_clock_mhz")),
            "nvlink": nvlink,
            "errors": float(errors) if errors is not None else None,
        }
        return GpuView(
            index=index,
            state=state,
            age_s=age_s,
            uuid=row.get("uuid"),
            values=values,
            row=row,
            clock_reasons=clock_reason_names(row.get("clocks_event_reasons")),
            name=name,
        )

    def _switches(
        self,
        newest: FrameSummary,
        last: PairSummary | None,
        window: Sequence[PairSummary],
    ) -> tuple[SwitchTrayView, ...]:
        up: list[int | None] = [None] * SWITCH_TRAYS
        for key, state in (newest.links.state if newest.links else {}).items():
            tray = (key % LINKS_PER_GPU) // CHIPS_PER_SWITCH_TRAY
            if state is not None:
                up[tray] = (up[tray] or 0) + (state == NVLINK_ACTIVE)
        views = []
        for t in range(SWITCH_TRAYS):
            errs = sum_known([p.switch_errors[t] for p in window])
            views.append(
                SwitchTrayView(
                    number=t + 1,
                    links_up=up[t],
                    links_total=GPUS * CHIPS_PER_SWITCH_TRAY,
                    gbps=last.nvlink.tray_gbps(t) if last and last.nvlink else None,
                    errors=errs,
                )
            )
        return tuple(views)

    def _totals(
        self,
        gpus: Sequence[GpuView],
        last: PairSummary | None,
        summaries: Sequence[FrameSummary],
    ) -> RackTotals:
        counts = {state: 0 for state in CellState}
        for index in self.layout.gpus:
            counts[gpus[index].state] += 1
        held = len(self.layout.gpus)
        fresh_ms = self.stale_intervals * self._infer_interval(summaries)
        tokens = rack_tokens([(s.ts_ms, s.serving) for s in summaries], self.rate_window_ms, fresh_ms)
        # The GPUs' readings as their cells show them (each GPU's newest within the freshness window),
        # so a tick where a tray's answer was still on its way is not summed as a smaller rack.
        shown = [v.row for v in gpus if v.row is not None and v.state in (CellState.OK, CellState.ERROR)]
        power = power_total_kw(((r["state"], r.get("power_mw")) for r in shown), held)
        limits = [r["power_limit_mw"] for r in shown if r.get("power_limit_mw") is not None]
        return RackTotals(
            gpus_ok=counts[CellState.OK],
            gpus_lost=counts[CellState.LOST],
            gpus_stale=counts[CellState.STALE] + counts[CellState.NO_DATA],
            gpus_error=counts[CellState.ERROR],
            gpus_total=held,
            power_kw=power.value,
            power_covered=power.covered,
            power_limit_kw=sum(limits) / 1e6 if limits else None,
            nvlink_tbps=last.rack_tbps if last else None,
            nvlink_text=rack_nvlink_text(last.nvlink, held) if last and last.nvlink else "-- TB/s",
            tokens_per_s=tokens.value,
            tokens_covered=tokens.covered,
            endpoints=tokens.of,
        )

    def _events(self, frames: Sequence[Frame]) -> tuple[EventView, ...]:
        out: list[EventView] = []
        for frame in reversed(frames):
            batch = frame.batches.get("events")
            if batch is None or not batch.num_rows:
                continue
            cols = batch.to_pydict()
            rows = list(zip(*cols.values(), strict=True))
            for ts, kind, gpu, link, code, source, detail in reversed(rows):
                at = _ms(ts, frame.ts_ms)
                out.append(EventView(at, kind, gpu, link, code, source, detail, self.layout.name(gpu)))
                if len(out) >= self.max_events:
                    return tuple(out)
        return tuple(out)


def build_snapshot(frames: Sequence[Frame], **options: Any) -> RackSnapshot:
    """A one-off snapshot of `frames` (oldest first); options as for SnapshotBuilder."""
    return SnapshotBuilder(**options).build(frames)


def _newest_first(summaries: Sequence[FrameSummary]) -> list[tuple[int, FrameSummary]]:
    return list(reversed(list(enumerate(summaries))))


def _newest_row(
    index: int, summaries: Sequence[FrameSummary], fresh_ms: int
) -> tuple[int, dict[str, Any]] | None:
    """(position, row) of GPU `index`'s newest own reading within `fresh_ms` (monitor.view.lookback)."""
    found = ((s.ts_ms, (pos, s.rows[index])) for pos, s in _newest_first(summaries) if index in s.rows)
    return freshest(found, summaries[-1].ts_ms, fresh_ms, lambda hit: hit[1]["state"] == GpuState.STALE)


def _reported(row: dict[str, Any] | None) -> bool:
    """Whether a row carries the GPU's own readings (not a stale placeholder)."""
    return row is not None and row["state"] in (GpuState.OK, GpuState.ERROR)


def _num(value: Any) -> float | None:
    return float(value) if value is not None else None


def _scaled(value: Any, divisor: float) -> float | None:
    return value / divisor if value is not None else None


def _ms(ts: Any, fallback: int) -> int:
    """Epoch ms of an Arrow timestamp value as to_pydict returns it (a datetime)."""
    if isinstance(ts, int):
        return ts
    if hasattr(ts, "timestamp"):
        return round(ts.timestamp() * 1000)
    return fallback
