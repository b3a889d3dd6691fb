"""Latency histograms as an inference server keeps them: cumulative bucket counters, sum and count.

Observations are drawn from a log-normal distribution whose median moves with the simulated state.
Instead of sampling thousands of latencies per second, each step adds its observation count spread
over the buckets by the distribution's CDF (expected counts); reported buckets are the floor of those
running totals, so they stay integer, cumulative across buckets and monotonic over time, and the +Inf
bucket always equals the count. Consecutive steps with the same median are merged, so a step costs
O(1) whatever the number of buckets.
"""

from __future__ import annotations

import math

VLLM_TTFT_BOUNDS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
"""vllm:time_to_first_token_seconds bucket bounds (reference/serving.md section 1.2)."""
VLLM_ITL_BOUNDS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
"""vllm:inter_token_latency_seconds bucket bounds."""
VLLM_E2E_BOUNDS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0,
)  # fmt: skip
"""vllm:e2e_request_latency_seconds bucket bounds."""

_MEDIAN_STEPS_PER_E = 50
"""Medians are quantised to 2 % steps so steady periods share one cached CDF (and merge)."""
_cdf_cache: dict[tuple[tuple[float, ...], float, int], tuple[float, ...]] = {}


def _cdf(bounds: tuple[float, ...], sigma: float, key: int) -> tuple[float, ...]:
    cached = _cdf_cache.get((bounds, sigma, key))
    if cached is None:
        mu = key / _MEDIAN_STEPS_PER_E
        scale = sigma * math.sqrt(2.0)
        cached = tuple(0.5 * math.erfc(-(math.log(b) - mu) / scale) for b in bounds)
        _cdf_cache[(bounds, sigma, key)] = cached
    return cached


class Histogram:
    """A Prometheus-style cumulative histogram fed with log-normal observations."""

    __slots__ = ("_key", "_mean", "_median", "_pending", "_settled", "bounds", "count", "sigma", "sum")

    def __init__(self, bounds: tuple[float, ...], sigma: float) -> None:
        """Buckets with upper bounds `bounds` (seconds, ascending); `sigma` is the log-normal spread."""
        self.bounds = bounds
        self.sigma = sigma
        self.count = 0
        self.sum = 0.0
        self._settled = [0.0] * len(bounds)
        self._pending = 0
        self._key = 0
        self._median = math.nan
        self._mean = math.nan

    def observe(self, n: int, median: float) -> None:
        """Add `n` observations whose median is `median` seconds."""
        if n <= 0:
            return
        if median != self._median:
            self._median = median
            self._mean = median * math.exp(self.sigma * self.sigma / 2.0)
            key = round(math.log(median) * _MEDIAN_STEPS_PER_E)
            if key != self._key:
                self._flush()
                self._key = key
        self._pending += n
        self.count += n
        self.sum += n * self._mean

    def _flush(self) -> None:
        if self._pending:
            cdf = _cdf(self.bounds, self.sigma, self._key)
            self._settled = [s + self._pending * c for s, c in zip(self._settled, cdf, strict=True)]
            self._pending = 0

    def buckets(self) -> list[tuple[float, int]]:
        """(le, cumulative count) for every bound, then (inf, count)."""
        cdf = _cdf(self.bounds, self.sigma, self._key)
        pending = self._pending
        out = [
            (b, min(self.count, math.floor(s + pending * c)))
            for b, s, c in zip(self.bounds, self._settled, cdf, strict=True)
        ]
        out.append((math.inf, self.count))
        return out

    def quantile(self, q: float) -> float:
        """The q-quantile by PromQL's histogram_quantile (linear within a bucket); nan when empty."""
        rows = self.buckets()
        total = rows[-1][1]
        if total == 0:
            return math.nan
        rank = q * total
        prev_b, prev_c = 0.0, 0
        for b, c in rows:
            if c >= rank:
                if math.isinf(b):
                    return prev_b
                return prev_b + (b - prev_b) * (rank - prev_c) / max(c - prev_c, 1)
            prev_b, prev_c = b, c
        return prev_b
