"""The serving view model: rack and per-instance tokens/s, queues, KV-cache use and latency percentiles.

Built from the head's (or a replay's) `serving` and `serving_hist` rows with collectors.serving_math:
counter rates with reset detection over a window of frames, percentiles from histogram bucket
increases over the same window (PromQL histogram_quantile). No UI toolkit here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from collectors.serving_math import Point, bucket_increases, histogram_quantile, rate
from monitor.view.lookback import freshest, interval_ms
from monitor.view.model import CellState, RackSnapshot
from monitor.view.serving_hist import HistLayouts
from storage.frame import Frame
from storage.increase import step
from storage.schemas import Q4_SCALE, EndpointState

STATE_NAMES = {
    int(EndpointState.OK): "ok",
    int(EndpointState.STALE): "stale",
    int(EndpointState.DOWN): "down",
    int(EndpointState.PARTIAL): "partial",
}
_ANSWERED = (EndpointState.OK, EndpointState.PARTIAL)
"""Rows whose counters and gauges are current (a partial row covers the series that answered)."""
ANSWERED_NAMES = ("ok", "partial")
FAULT_NAMES = ("gpu lost", "stalled")
"""Faults of a server that answers but does not serve (InstanceView.fault), most severe first."""
STATUS_NAMES = ("ok", "partial", "stale", "down", *FAULT_NAMES)


@dataclass(frozen=True, slots=True)
class InstanceView:
    """One inference server as the serving panel shows it (None: not reported or not computable).

    Attributes:
        endpoint: its name. engine / model / gpus: as the newest row has them.
        state: "ok", "partial" (a series of the page was NaN or missing), "stale" or "down" (from the
            newest row).
        age_s: for a server that does not answer, seconds since its last answered row in the window.
        dup_samples: repeated series dropped from its newest page (the first sample of each counts).
        tokens_per_s / prompt_per_s: generated / prompt tokens per second over the window.
        running / waiting / kv_cache: the newest gauges (kv_cache as a 0..1 fraction).
        ttft_p50_s / ttft_p99_s / itl_p50_s: percentiles over the window's observations.
        cache_hit: the share of the window's prompt tokens served from the prefix cache (the rate
            of serving.cached_tokens over that of prompt_tokens; None where the engine has no
            cached-token counter or no prompt tokens came).
        queue_p50_s: median time a request waited before it was scheduled (TTFT = queue + prefill).
        fault: why a server that answers is not serving: 'gpu lost' (a GPU it runs on is lost) or
            'stalled' (no tokens over the window while requests wait and the queue does not drain);
            None when it serves, or when it does not answer (its state says so).
        fault_reason: the fault in words: 'T18.G4 lost', 'no tokens in 10 s, 16,893 waiting (+1,204)'.
    """

    endpoint: str
    engine: str
    model: str | None
    gpus: str | None
    state: str
    age_s: float | None = None
    tokens_per_s: float | None = None
    prompt_per_s: float | None = None
    running: int | None = None
    waiting: int | None = None
    kv_cache: float | None = None
    ttft_p50_s: float | None = None
    ttft_p99_s: float | None = None
    itl_p50_s: float | None = None
    dup_samples: int | None = None
    cache_hit: float | None = None
    queue_p50_s: float | None = None
    fault: str | None = None
    fault_reason: str = ""

    @property
    def status(self) -> str:
        """The one word a table shows: the fault when there is one, else the state."""
        return self.fault or self.state


@dataclass(frozen=True, slots=True)
class ServingSnapshot:
    """The rack's serving figures at one moment.

    Attributes:
        ts_ms: the newest frame's time (None without serving rows).
        instances: by endpoint name.
        tokens_per_s / prompt_per_s: rack totals over the window (None without two samples).
        tokens_history / prompt_history: rack tokens/s per frame pair, oldest first.
    """

    ts_ms: int | None
    instances: tuple[InstanceView, ...] = ()
    tokens_per_s: float | None = None
    prompt_per_s: float | None = None
    tokens_history: tuple[float, ...] = ()
    prompt_history: tuple[float, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        """How many instances are ok, partial, stale, down, and (answering but not serving) gpu lost and
        stalled: each instance counts once, under its status."""
        out = dict.fromkeys(STATUS_NAMES, 0)
        for inst in self.instances:
            out[inst.status] = out.get(inst.status, 0) + 1
        return out


@dataclass(frozen=True, slots=True)
class _FrameServing:
    """One frame's serving rows by endpoint, and its histograms by (endpoint, metric)."""

    ts_ms: int
    rows: dict[str, dict[str, Any]]
    hists: dict[tuple[str, str], dict[float, float]]
    thin: bool = False
    """Thinned (_thin): no histograms, and rows of only _THIN_COLUMNS."""


_THIN_COLUMNS = ("state", "generation_tokens", "prompt_tokens")
"""What a frame outside the rate window is read for: whether a server answered, and the sparklines."""


def _thin(summary: _FrameServing) -> _FrameServing:
    """A frame's serving summary once it left the window: ~15 KB for the rack, not ~800 KB (buckets)."""
    if summary.thin:
        return summary
    rows = {name: {c: row.get(c) for c in _THIN_COLUMNS} for name, row in summary.rows.items()}
    return _FrameServing(summary.ts_ms, rows, {}, thin=True)


def _summarise(frame: Frame, layouts: HistLayouts) -> _FrameServing:
    serving = frame.batches.get("serving")
    rows: dict[str, dict[str, Any]] = {}
    if serving is not None and serving.num_rows:
        for row in serving.to_pylist():
            rows[row["endpoint"]] = row
    hists: dict[tuple[str, str], dict[float, float]] = {}
    hist = frame.batches.get("serving_hist")
    if hist is not None and hist.num_rows:
        counts = hist.column("count").to_pylist()
        for key, bounds, take in layouts.of(hist):
            hists[key] = dict(
                zip(
                    bounds,
                    counts[take] if isinstance(take, slice) else [counts[i] for i in take],
                    strict=True,
                )
            )
    return _FrameServing(frame.ts_ms, rows, hists)


_Steps = tuple[tuple[float, ...], tuple[float, ...]]
"""One histogram's bucket steps between two snapshots: (bounds, steps), in the same order."""


def _finite(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


class ServingBuilder:
    """Builds ServingSnapshots from the newest frames; caches each frame's summary (one thread only)."""

    def __init__(self, *, window_s: float = 10.0, history: int = 60, stale_intervals: int = 3) -> None:
        """Rates and percentiles over `window_s`; `history` points of rack tokens/s for the sparklines.

        A server shows its newest page not older than `stale_intervals` intervals (see _freshest_row).
        """
        self.window_ms = int(window_s * 1000)
        self.stale_intervals = stale_intervals
        self.history = history
        self._cache: dict[int, _FrameServing] = {}
        self._steps: dict[tuple[int, int], dict[tuple[str, str], _Steps | None]] = {}
        """Per pair of frames (ts, ts): each histogram's bucket increases between them (_increases)."""
        self._pair_totals: dict[tuple[int, int, str], float] = {}
        """Per pair of frames and counter: rack tokens/s between them (the sparklines, _history)."""
        self._layouts = HistLayouts()
        self._bounds: dict[tuple[float, ...], tuple[float, ...]] = {}
        """Each distinct tuple of bucket bounds once: pairs that step the same buckets share one object."""

    def frames_needed(self) -> int:
        """Frames build() looks at (the sparkline history plus one)."""
        return self.history + 1

    def build(self, frames: Sequence[Frame], rack: RackSnapshot | None = None) -> ServingSnapshot:
        """The snapshot of the newest frame, using up to frames_needed() frames before it.

        With `rack` (the rack snapshot of the same frames), a server on a GPU that snapshot reads as lost
        is 'gpu lost' (the rack view's own verdict on a GPU, not a second one).
        """
        frames = [f for f in frames[-self.frames_needed() :] if "serving" in f.batches]
        if not frames:
            self._cache = {}
            return ServingSnapshot(ts_ms=None)
        since = frames[-1].ts_ms - self.window_ms
        fresh_ms = self.stale_intervals * interval_ms([f.ts_ms for f in frames])
        # Whole summaries for the window (rates, percentiles, gauges) and for the rows a stale endpoint
        # may still be shown from (_freshest_row); thin ones before that (sparklines).
        whole_since = min(since, frames[-1].ts_ms - fresh_ms)
        summaries = [self._summary(f, whole=f.ts_ms >= whole_since) for f in frames]
        self._cache = {s.ts_ms: s for s in summaries}
        newest = summaries[-1]
        window = [s for s in summaries if s.ts_ms >= since]
        self._steps = {k: v for k, v in self._steps.items() if k[0] >= window[0].ts_ms}
        self._pair_totals = {k: v for k, v in self._pair_totals.items() if k[0] >= summaries[0].ts_ms}
        lost = lost_gpus(rack)
        instances = tuple(
            _with_fault(self._instance(name, summaries, window, fresh_ms), window, lost)
            for name in sorted(newest.rows)
        )
        gen = [i.tokens_per_s for i in instances if i.tokens_per_s is not None]
        prompt = [i.prompt_per_s for i in instances if i.prompt_per_s is not None]
        return ServingSnapshot(
            ts_ms=newest.ts_ms,
            instances=instances,
            tokens_per_s=sum(gen) if gen else None,
            prompt_per_s=sum(prompt) if prompt else None,
            tokens_history=self._history(summaries, "generation_tokens"),
            prompt_history=self._history(summaries, "prompt_tokens"),
        )

    def _summary(self, frame: Frame, *, whole: bool) -> _FrameServing:
        cached = self._cache.get(frame.ts_ms)
        if cached is None or (whole and cached.thin):  # new, or back in the window (a replay seek)
            cached = _summarise(frame, self._layouts)
        return cached if whole else _thin(cached)

    def _instance(
        self,
        name: str,
        summaries: Sequence[_FrameServing],
        window: Sequence[_FrameServing],
        fresh_ms: int,
    ) -> InstanceView:
        row = _freshest_row(summaries, name, fresh_ms)
        state = STATE_NAMES.get(row["state"], "down")
        ok = [s for s in window if s.rows.get(name, {}).get("state") in _ANSWERED]
        answered = state in ANSWERED_NAMES
        age = None
        if not answered:
            last_ok = next(
                (s.ts_ms for s in reversed(summaries) if s.rows.get(name, {}).get("state") in _ANSWERED),
                None,
            )
            age = (summaries[-1].ts_ms - last_ok) / 1000 if last_ok is not None else None
        kv = row.get("kv_cache_q4")
        ttft = self._increases(ok, name, "ttft")  # one window's increases for both percentiles
        prompt = _rate(ok, name, "prompt_tokens") if answered else None  # also the hit rate's denominator
        return InstanceView(
            endpoint=name,
            engine=row["engine"],
            model=row.get("model"),
            gpus=row.get("gpus"),
            state=state,
            age_s=age,
            tokens_per_s=_rate(ok, name, "generation_tokens") if answered else None,
            prompt_per_s=prompt,
            running=row.get("running"),
            waiting=row.get("waiting"),
            kv_cache=kv / Q4_SCALE if kv is not None else None,
            ttft_p50_s=_quantile(ttft, 0.5),
            ttft_p99_s=_quantile(ttft, 0.99),
            itl_p50_s=_quantile(self._increases(ok, name, "itl"), 0.5),
            dup_samples=row.get("dup_samples"),
            cache_hit=_hit_rate(ok, name, prompt) if answered else None,
            queue_p50_s=_quantile(self._increases(ok, name, "queue"), 0.5),
        )

    def _increases(self, ok: Sequence[_FrameServing], name: str, metric: str) -> dict[float, float] | None:
        """The window's bucket increases of one histogram (collectors.serving_math.bucket_increases' rule).

        Each bucket is its own counter: its increase over the window is the sum of the one rule's
        steps (storage.increase.step) between consecutive snapshots, so each pair's steps are taken
        once, when the pair is new, and the window sums them; bounds missing from any snapshot are
        dropped. None with fewer than two snapshots.
        """
        key = (name, metric)
        held = [s for s in ok if key in s.hists]
        if len(held) < 2:
            return None
        pairs: list[_Steps | None] = []
        for old, new in pairwise(held):
            steps = self._steps.setdefault((old.ts_ms, new.ts_ms), {})
            if key not in steps:
                steps[key] = self._pair_steps(old.hists[key], new.hists[key])
            pairs.append(steps[key])
        if any(p is None for p in pairs):  # a missing count: the primitive steps over the gap
            return bucket_increases([s.hists[key] for s in held])
        known = [p for p in pairs if p is not None]
        bounds = known[0][0]
        if all(p[0] is bounds for p in known):  # the usual case: every pair steps the same buckets
            # Each bucket's steps summed in pair order from 0, as the general case below sums them.
            return dict(zip(bounds, map(sum, zip(*(p[1] for p in known), strict=True)), strict=True))
        common = set(bounds).intersection(*(p[0] for p in known[1:]))
        by_pair = [dict(zip(*p, strict=True)) for p in known]
        return {le: sum(p[le] for p in by_pair) for le in common}

    def _pair_steps(self, before: Mapping[float, float], after: Mapping[float, float]) -> _Steps | None:
        """_bucket_steps as (bounds, steps) tuples; pairs with the same bounds share one bounds tuple."""
        out = _bucket_steps(before, after)
        if out is None:
            return None
        bounds = tuple(out)
        if len(self._bounds) > 1000:  # a source whose buckets keep changing: forget, do not grow
            self._bounds.clear()
        return self._bounds.setdefault(bounds, bounds), tuple(out.values())

    def _history(self, summaries: Sequence[_FrameServing], column: str) -> tuple[float, ...]:
        """Rack `column`/s between each pair of consecutive frames, each pair computed once (_pair_total)."""
        out: list[float] = []
        for old, new in pairwise(summaries):
            if new.ts_ms <= old.ts_ms:
                continue
            key = (old.ts_ms, new.ts_ms, column)
            total = self._pair_totals.get(key)
            if total is None:
                total = self._pair_totals[key] = _pair_total(old, new, column)
            out.append(total)
        return tuple(out)


def lost_gpus(rack: RackSnapshot | None) -> dict[int, str]:
    """Rack index -> label of every GPU the rack snapshot reads as lost."""
    if rack is None:
        return {}
    return {g.index: g.label for g in rack.gpus if g.state is CellState.LOST}


def _with_fault(inst: InstanceView, window: Sequence[_FrameServing], lost: dict[int, str]) -> InstanceView:
    """The instance with its fault, when it answers but does not serve (see InstanceView.fault)."""
    if inst.state not in ANSWERED_NAMES:
        return inst  # a server that does not answer says so in its state
    gone = [lost[g] for g in parse_gpus(inst.gpus) if g in lost]
    if gone:
        return replace(inst, fault="gpu lost", fault_reason=f"{', '.join(gone)} lost")
    stalled = _stall(inst, window)
    return replace(inst, fault="stalled", fault_reason=stalled) if stalled else inst


def _stall(inst: InstanceView, window: Sequence[_FrameServing]) -> str | None:
    """'no tokens in 10 s, 16,893 waiting (+1,204)' when the window's generated-token rate is 0 while
    requests wait and the queue does not drain; else None."""
    if inst.tokens_per_s is None or inst.tokens_per_s > 0 or not inst.waiting:
        return None
    waited = [
        (s.ts_ms, row["waiting"])
        for s in window
        if (row := s.rows.get(inst.endpoint)) is not None
        and row.get("state") in _ANSWERED
        and row.get("waiting") is not None
    ]
    if len(waited) < 2 or inst.waiting < waited[0][1]:
        return None  # draining: the server works its queue off
    span_s = (waited[-1][0] - waited[0][0]) / 1000
    return f"no tokens in {span_s:.0f} s, {inst.waiting:,} waiting ({inst.waiting - waited[0][1]:+,})"


def parse_gpus(text: str | None) -> tuple[int, ...]:
    """serving.gpus ('8,9,10,11') as rack indices; () when unknown or malformed."""
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        return ()


def _freshest_row(summaries: Sequence[_FrameServing], name: str, fresh_ms: int) -> dict[str, Any]:
    """The endpoint's newest own page within `fresh_ms` (monitor.view.lookback), else its newest row."""
    newest = summaries[-1]
    rows = ((s.ts_ms, s.rows[name]) for s in reversed(summaries) if name in s.rows)
    found = freshest(rows, newest.ts_ms, fresh_ms, lambda row: row["state"] == EndpointState.STALE)
    return found if found is not None else newest.rows[name]


def _rate(ok: Sequence[_FrameServing], name: str, column: str) -> float | None:
    points: list[Point] = [
        (s.ts_ms, s.rows[name][column]) for s in ok if s.rows[name].get(column) is not None
    ]
    return rate(points)


def _hit_rate(ok: Sequence[_FrameServing], name: str, prompt: float | None) -> float | None:
    """Prompt tokens served from the prefix cache over all prompt tokens (`prompt`/s), over the window."""
    cached = _rate(ok, name, "cached_tokens")
    if cached is None or not prompt:
        return None
    return min(cached / prompt, 1.0)


def _quantile(increases: dict[float, float] | None, q: float) -> float | None:
    return None if increases is None else _finite(histogram_quantile(q, increases))


def _bucket_steps(before: Mapping[float, float], after: Mapping[float, float]) -> dict[float, float] | None:
    """Each bucket's step between two snapshots (storage.increase.step); None if any count is missing.

    A missing count (None, NaN) is a gap that collectors.serving_math.bucket_increases steps over, from
    the sample before it to the one after; a pair cannot, so the caller falls back to the primitive.
    """
    out: dict[float, float] = {}
    for le, count in after.items():
        if le in before:
            delta = step(before[le], count)
            if delta is None:
                return None
            out[le] = delta
    return out


def _pair_total(old: _FrameServing, new: _FrameServing, column: str) -> float:
    """Rack `column`/s between two consecutive frames (endpoints answering in both)."""
    total = 0.0
    for name, row in new.rows.items():
        before = old.rows.get(name)
        if before is None or row["state"] not in _ANSWERED or before["state"] not in _ANSWERED:
            continue
        if before.get(column) is None or row.get(column) is None:
            continue
        total += rate([(old.ts_ms, before[column]), (new.ts_ms, row[column])]) or 0.0
    return total
