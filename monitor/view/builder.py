"""Build RackSnapshots from frames: per-GPU state and values, counter rates with reset detection, totals.

The same builder serves live (the head's newest frames) and replay (frames read at a cursor). It keeps a
small cache of per-frame and per-frame-pair summaries so that each new tick costs one frame's work, not
a whole window's. One builder belongs to one thread.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collectors.rack import CHIPS_PER_SWITCH_TRAY, GPUS, LINKS_PER_GPU, SWITCH_TRAYS
from monitor.view.layout import RACK, GpuLayout
from monitor.view.lookback import freshest, interval_ms
from monitor.view.metrics import MIB_PER_GIB
from monitor.view.model import (
    CellState,
    EventView,
    GpuView,
    LinkTrouble,
    RackSnapshot,
    RackTotals,
    SwitchTrayView,
    clock_reason_names,
)
from monitor.view.nvlink import (
    NVLINK_INACTIVE,
    LinkFrame,
    NvlinkRates,
    error_growth,
    link_frame,
    nvlink_rates,
    rack_nvlink_text,
)
from monitor.view.totals import ServingCounters, power_history, rack_tokens, serving_counters
from storage.frame import Frame
from storage.increase import step
from storage.rack_total import RackTotal, power_total_kw
from storage.schemas import GpuState

NVLINK_ACTIVE = 1
"""NVML_NVLINK_STATE_ACTIVE as stored in nvlink.state."""

_STATE = {
    GpuState.OK: CellState.OK,
    GpuState.LOST: CellState.LOST,
    GpuState.STALE: CellState.STALE,
    GpuState.ERROR: CellState.ERROR,
}


@dataclass(frozen=True, slots=True)
class _FrameSummary:
    """What the builder keeps of one frame."""

    ts_ms: int
    rows: dict[int, dict[str, Any]]
    links: LinkFrame | None
    """The frame's nvlink rows (monitor.view.nvlink)."""
    power: RackTotal
    """Rack power at this tick over the GPUs that reported (storage.rack_total)."""
    serving: ServingCounters
    """Per serving series (endpoint, engine): (state, generation_tokens)."""


@dataclass(frozen=True, slots=True)
class _PairSummary:
    """Rates and increases between two consecutive frames."""

    nvlink: NvlinkRates | None
    """NVLink rates per link, GPU, switch chip and rack: the one computation (monitor.view.nvlink)."""
    gpu_errors: dict[int, int | None]
    switch_errors: tuple[int | None, ...]
    link_growth: dict[int, int]
    """Links (gpu * 18 + link) whose error counters grew, with the growth."""

    @property
    def rack_tbps(self) -> float | None:
        """The rack's NVLink total (TB/s) over this pair."""
        return self.nvlink.rack_tbps if self.nvlink else None


def _sum_known(values: Sequence[int | None]) -> int | None:
    """The sum of the known values, or None when none is known."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


ECC_COLUMNS = ("ecc_corrected", "ecc_uncorrected")


def _int_step(old: int | None, new: int | None) -> int | None:
    """An integer counter's increase by the one rule (storage.increase.step)."""
    grown = step(old, new)
    return None if grown is None else int(grown)


def summarise_frame(frame: Frame) -> _FrameSummary:
    """Reduce one frame to per-GPU rows, its nvlink rows and rack power."""
    # Row times equal the frame's tick, and converting 72 timestamps to datetimes is wasted work.
    gpu = frame.table("gpu").drop_columns(["ts"]).to_pydict()
    names = list(gpu)
    at = names.index("gpu")
    rows = {
        int(values[at]): dict(zip(names, values, strict=True)) for values in zip(*gpu.values(), strict=True)
    }
    return _FrameSummary(
        ts_ms=frame.ts_ms,
        rows=rows,
        links=link_frame(frame),
        power=power_total_kw(((r["state"], r.get("power_mw")) for r in rows.values()), GPUS),
        serving=serving_counters(frame),
    )


def summarise_pair(old: _FrameSummary, new: _FrameSummary) -> _PairSummary:
    """NVLink rates, per-GPU error increases (ECC + NVLink) and per-switch-tray errors between two frames.

    Every counter is its own series: each one's increase is taken, then they are summed.
    """
    link_growth: dict[int, int] = {}
    if old.links is not None and new.links is not None:
        link_growth = error_growth(old.links, new.links)
    gpu_errors: dict[int, int | None] = {}
    for index, row in new.rows.items():
        prev = old.rows.get(index)
        if prev is None:
            continue
        parts = [_int_step(prev.get(c), row.get(c)) for c in ECC_COLUMNS]
        if new.links is not None and old.links is not None:
            first = index * LINKS_PER_GPU
            if any(first + k in new.links.errors for k in range(LINKS_PER_GPU)):
                parts.append(sum(link_growth.get(first + k, 0) for k in range(LINKS_PER_GPU)))
        gpu_errors[index] = _sum_known(parts)
    switch_err: list[int | None] = [None] * SWITCH_TRAYS
    if new.links is not None and old.links is not None:
        for key in new.links.errors:
            if key in old.links.errors:
                tray = (key % LINKS_PER_GPU) // CHIPS_PER_SWITCH_TRAY
                switch_err[tray] = (switch_err[tray] or 0) + link_growth.get(key, 0)
    rates = nvlink_rates(old.links, new.links) if old.links is not None and new.links is not None else None
    return _PairSummary(rates, gpu_errors, tuple(switch_err), link_growth)


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
        self._frames: dict[int, _FrameSummary] = {}
        self._pairs: dict[tuple[int, int], _PairSummary] = {}

    def frames_needed(self) -> int:
        """How many of the newest frames build() wants (history plus one for the first rate)."""
        return self.history + 1

    def _summary(self, frame: Frame) -> _FrameSummary:
        cached = self._frames.get(frame.ts_ms)
        if cached is None:
            cached = self._frames[frame.ts_ms] = summarise_frame(frame)
        return cached

    def _pair(self, old: _FrameSummary, new: _FrameSummary) -> _PairSummary:
        key = (old.ts_ms, new.ts_ms)
        cached = self._pairs.get(key)
        if cached is None:
            cached = self._pairs[key] = summarise_pair(old, new)
        return cached

    def _infer_interval(self, frames: Sequence[Frame] | Sequence[_FrameSummary]) -> int:
        if self.interval_ms is not None:
            return self.interval_ms
        return interval_ms([f.ts_ms for f in frames[-11:]])

    def build(self, frames: Sequence[Frame], *, version: int = 0) -> RackSnapshot:
        """The snapshot at the newest of `frames` (oldest first; only the newest history+1 are used)."""
        frames = list(frames[-self.frames_needed() :])
        if not frames:
            return RackSnapshot.empty()
        summaries = [self._summary(f) for f in frames]
        pairs = [self._pair(a, b) for a, b in itertools.pairwise(summaries)]
        self._forget(summaries)
        newest = summaries[-1]
        interval = self._infer_interval(frames)
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
            nvlink_history_tbps=_nvlink_history(pairs[-self.history :]),
            events=self._events(frames),
            version=version,
            layout=self.layout,
            links=_link_trouble(newest, window),
        )

    def _forget(self, kept: Sequence[_FrameSummary]) -> None:
        """Drop cached summaries of frames that fell out of the window (keeps memory bounded)."""
        if len(self._frames) <= len(kept):
            return
        keep = {s.ts_ms for s in kept}
        self._frames = {ts: s for ts, s in self._frames.items() if ts in keep}
        self._pairs = {k: p for k, p in self._pairs.items() if k[0] in keep and k[1] in keep}

    def _gpu_view(
        self,
        index: int,
        summaries: Sequence[_FrameSummary],
        pairs: Sequence[_PairSummary],
        window: Sequence[_PairSummary],
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
        errors = _sum_known([p.gpu_errors.get(index) for p in window])
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
        newest: _FrameSummary,
        last: _PairSummary | None,
        window: Sequence[_PairSummary],
    ) -> tuple[SwitchTrayView, ...]:
        up: list[int | None] = [None] * SWITCH_TRAYS
        for key, state in (newest.links.state if newest.links else {}).items():
            tray = (key % LINKS_PER_GPU) // CHIPS_PER_SWITCH_TRAY
            if state is not None:
                up[tray] = (up[tray] or 0) + (state == NVLINK_ACTIVE)
        views = []
        for t in range(SWITCH_TRAYS):
            errs = _sum_known([p.switch_errors[t] for p in window])
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
        last: _PairSummary | None,
        summaries: Sequence[_FrameSummary],
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


def _link_trouble(newest: _FrameSummary, window: Sequence[_PairSummary]) -> tuple[LinkTrouble, ...]:
    """The links the newest frame reports down, and those whose error counters grew within the window."""
    grown: dict[int, list[int]] = {}
    for pair in window:
        for key, growth in pair.link_growth.items():
            grown.setdefault(key, []).append(growth)
    states = newest.links.state if newest.links is not None else {}
    down = {key for key, state in states.items() if state == NVLINK_INACTIVE}
    return tuple(
        LinkTrouble(
            *divmod(key, LINKS_PER_GPU), key in down, len(grown.get(key, ())), sum(grown.get(key, ()))
        )
        for key in sorted(down | grown.keys())
    )


def _nvlink_history(pairs: Sequence[_PairSummary]) -> tuple[float, ...]:
    """Rack NVLink TB/s per pair, leaving out pairs that cover fewer GPUs than the best-covered one."""
    rated = [p.nvlink for p in pairs if p.nvlink is not None and p.nvlink.rack_tbps is not None]
    most = max((r.gpus for r in rated), default=0)
    return tuple(r.rack_tbps for r in rated if r.gpus == most)  # type: ignore[misc]


def build_snapshot(frames: Sequence[Frame], **options: Any) -> RackSnapshot:
    """A one-off snapshot of `frames` (oldest first); options as for SnapshotBuilder."""
    return SnapshotBuilder(**options).build(frames)


def _newest_first(summaries: Sequence[_FrameSummary]) -> list[tuple[int, _FrameSummary]]:
    return list(reversed(list(enumerate(summaries))))


def _newest_row(
    index: int, summaries: Sequence[_FrameSummary], fresh_ms: int
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
