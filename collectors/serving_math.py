"""PromQL counter and histogram maths without Prometheus: rates, histogram_quantile, MLPerf throughput.

Counters are stored raw; these turn a window of (ts_ms, value) samples into rates at read time.
Two flavours of rate are offered and named for what they do:
- `increase` / `rate` (storage.increase, the project's one counter rule, re-exported here): no
  extrapolation. The increase over the window's samples (Prometheus' reset rule, NaN and None
  skipped) over the time those samples span. This is what the TUI shows: it never
  invents traffic outside the samples it has.
- `extrapolated_increase` / `extrapolated_rate`: exactly Prometheus' increase()/rate()
  (promql/functions.go extrapolatedRate): extrapolated to the range boundaries when the first/last
  sample is within 1.1 average intervals of them, never below a counter's zero point.
A reset is any sample lower than the one before it: the counter restarted from 0, so the increase
across it is the new value (Prometheus adds the pre-reset value back).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from storage.increase import Point, increase, rate, valued
from storage.quantile import bucket_quantile

__all__ = ["Point", "increase", "rate"]  # the one counter rule lives in storage.increase; re-exported


def extrapolated_increase(
    points: Sequence[Point], start_ms: int, end_ms: int, *, counter: bool = True
) -> float | None:
    """Prometheus' increase() over the range (start_ms, end_ms] from the samples inside it.

    Args:
        points: the series' samples inside the range, oldest first.
        start_ms / end_ms: the range (end = evaluation time, start = end - range).
        counter: apply reset handling and the zero-point limit (False: delta() semantics).
    """
    points = valued(points)
    if len(points) < 2:
        return None
    result = increase(points) if counter else points[-1][1] - points[0][1]
    assert result is not None
    to_start = (points[0][0] - start_ms) / 1000
    to_end = (end_ms - points[-1][0]) / 1000
    sampled = (points[-1][0] - points[0][0]) / 1000
    if sampled <= 0:
        return None
    average = sampled / (len(points) - 1)
    threshold = average * 1.1
    if to_start >= threshold:
        to_start = average / 2
    if counter and result > 0 and points[0][1] >= 0:
        # A counter cannot have been below zero: do not extrapolate past its zero point.
        to_zero = sampled * (points[0][1] / result)
        to_start = min(to_start, to_zero)
    if to_end >= threshold:
        to_end = average / 2
    return result * (sampled + to_start + to_end) / sampled


def extrapolated_rate(points: Sequence[Point], start_ms: int, end_ms: int) -> float | None:
    """Prometheus' rate(): extrapolated_increase divided by the range in seconds."""
    delta = extrapolated_increase(points, start_ms, end_ms)
    range_s = (end_ms - start_ms) / 1000
    return None if delta is None or range_s <= 0 else delta / range_s


def bucket_increases(snapshots: Sequence[Mapping[float, float]]) -> dict[float, float]:
    """Per-bucket increase over a window of cumulative bucket snapshots (le -> count), oldest first.

    Each bucket is a counter with its own reset detection, as rate(x_bucket[w]) treats it. A bound
    missing from any snapshot is dropped (bounds changed mid-window: the buckets are not comparable).
    """
    if len(snapshots) < 2:
        return {}
    bounds = set(snapshots[0])
    for snap in snapshots[1:]:
        bounds &= set(snap)
    out: dict[float, float] = {}
    for le in bounds:
        delta = increase([(i, snap[le]) for i, snap in enumerate(snapshots)])
        out[le] = 0.0 if delta is None else delta
    return out


def merge_buckets(histograms: Iterable[Mapping[float, float]]) -> dict[float, float]:
    """Sum histograms by `le` (e.g. bucket increases of many endpoints) on the bounds they all share."""
    merged: dict[float, float] | None = None
    for histogram in histograms:
        if merged is None:
            merged = dict(histogram)
            continue
        merged = {le: merged[le] + count for le, count in histogram.items() if le in merged}
    return merged or {}


def histogram_quantile(q: float, buckets: Mapping[float, float] | Iterable[tuple[float, float]]) -> float:
    """PromQL histogram_quantile(q, ...) over cumulative buckets (le -> count), e.g. bucket increases.

    The algorithm of promql/quantile.go bucketQuantile: buckets sorted by bound and made monotonic
    (a count below its predecessor is raised to it), rank = q x count(+Inf); the first bucket whose
    count reaches the rank is interpolated linearly from the previous bound (0 for the first bucket,
    unless its bound is <= 0: then that bound is the answer); a rank in the +Inf bucket answers the
    highest finite bound. NaN without a +Inf bucket, with fewer than 2 buckets, or with no
    observations; -Inf for q < 0 and +Inf for q > 1.
    """
    pairs = buckets.items() if isinstance(buckets, Mapping) else buckets
    merged: dict[float, float] = {}
    for le, count in pairs:  # series of several engines or pods add up bucket by bucket
        merged[le] = merged.get(le, 0.0) + count
    if any(math.isnan(count) for count in merged.values()):
        return math.nan
    return bucket_quantile(q, sorted(merged.items()))


def histogram_mean(sum_increase: float | None, count_increase: float | None) -> float:
    """Mean observation over a window: Δsum / Δcount (NaN without observations)."""
    if sum_increase is None or not count_increase:
        return math.nan
    return sum_increase / count_increase


def mlperf_throughput(series: Iterable[Sequence[Point]]) -> float | None:
    """MLPerf-style tokens/s: generated tokens over the window / wall time of the window.

    Args:
        series: the generation-token counter samples of every endpoint (and engine) over the run
            window, oldest first. Each series' increase is taken with reset detection and summed;
            the wall time is from the earliest first sample to the latest last sample.

    Returns:
        tokens per second, or None when no series has two samples or the window has no length.
    """
    tokens = 0.0
    first: int | None = None
    last: int | None = None
    counted = False
    for points in series:
        delta = increase(points)
        if delta is None:
            continue
        counted = True
        tokens += delta
        first = points[0][0] if first is None else min(first, points[0][0])
        last = points[-1][0] if last is None else max(last, points[-1][0])
    if not counted or first is None or last is None or last <= first:
        return None
    return tokens / ((last - first) / 1000)
