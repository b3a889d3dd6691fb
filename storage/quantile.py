"""PromQL's histogram_quantile, the one implementation the store, the report and the live views share."""

from __future__ import annotations

import math
from collections.abc import Sequence


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile over cumulative (upper bound, count) buckets sorted by bound.

    Mirrors prometheus/promql/quantile.go: NaN without a +Inf bucket or observations, the upper
    bound of the second-highest bucket when the rank lands in +Inf, linear interpolation otherwise
    (from 0 for the first bucket when its bound is positive).
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return math.nan
    bounds = [b for b, _ in buckets]
    counts: list[float] = []
    for _, c in buckets:
        # Counts must not fall with the bound; scrapes of different moments can make them.
        counts.append(max(c, counts[-1]) if counts else c)
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(buckets) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count == 0:
        # q = 0 over empty leading buckets: Prometheus computes 0/0 here, which is NaN.
        return math.nan
    return start + (end - start) * (rank / count)
