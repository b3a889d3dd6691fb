"""The one counter-increase rule, in SQL and in Python: every reader of a counter goes through here.

Prometheus' rule (promql/functions.go extrapolatedRate, minus the extrapolation): a counter's increase
is taken per series, over its consecutive samples that have a value; a sample lower than the one before
it means the counter restarted from 0, so the increase across that pair is the new value. A series'
rate is its increase over the time its samples span; a rack's rate is the sum of its series' rates,
never the rate of a sum (one series' reset would read as a reset of all of them).

The SQL side (reader, rollups, report, report.html) builds its expressions with `step_sql`; the Arrow
side (the reader's chaining of pieces, storage/counter_rates.py) calls `step_arrow`; the Python side
(live view, alerts, snapshot checks) calls `step`, `increase` and `rate`. tests/storage/
test_increase_agreement.py holds the three equal on random streams.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

Point = tuple[int, float]
"""One sample of a series: (timestamp in epoch ms, value)."""


def step_sql(value: str, prev: str) -> str:
    """SQL of the increase from `prev` to `value` (consecutive non-null samples of one series).

    0 where there is no previous sample (a series' first sample is where counting starts, never new
    work); the new value itself where the counter went down (a reset).
    """
    return f"(CASE WHEN {prev} IS NULL THEN 0 WHEN {value} >= {prev} THEN {value} - {prev} ELSE {value} END)"


def step_arrow(value: pa.Array, prev: pa.Array) -> pa.Array:
    """step_sql over Arrow arrays, element by element: 0 where prev is null, value on a drop."""
    import pyarrow as pa  # here, not at import: the live view never needs it
    import pyarrow.compute as pc

    went_on = pc.greater_equal(value, prev)
    zero = pa.scalar(0.0, pa.float64())  # typed: see counter_rates._int
    return pc.if_else(pc.is_null(prev), zero, pc.if_else(went_on, pc.subtract(value, prev), value))


def step(prev: float | None, value: float | None) -> float | None:
    """The increase from `prev` to `value`; None when either is missing (no pair to count)."""
    if prev is None or value is None or _missing(prev) or _missing(value):
        return None
    return value - prev if value >= prev else value


def _missing(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def valued(points: Iterable[Point]) -> list[Point]:
    """The samples that carry a value (None and NaN dropped: a gap, not a reset)."""
    return [(t, v) for t, v in points if v is not None and not _missing(v)]


def increase(points: Sequence[Point]) -> float | None:
    """A series' increase over its samples (oldest first); None with fewer than 2 valued samples."""
    kept = valued(points)
    if len(kept) < 2:
        return None
    return sum(step(prev, value) or 0.0 for (_, prev), (_, value) in itertools.pairwise(kept))


def rate(points: Sequence[Point]) -> float | None:
    """A series' increase per second over the span of its valued samples; None if undefined."""
    kept = valued(points)
    delta = increase(kept)
    if delta is None:
        return None
    span_s = (kept[-1][0] - kept[0][0]) / 1000
    return delta / span_s if span_s > 0 else None


class SlidingRate:
    """One counter's samples over a sliding window, each with its step from the valued sample before,
    kept as it arrives, and their running sum: `rate` over the window costs no pass over it (an alert asks
    every tick, over 300 samples per endpoint: the recorder's CPU grew 18 ms a tick as the window filled).

    The sum is the window's increase by `rate`'s rule: every valued sample's step but the first's (the
    first starts the count). It is re-added from the steps once per window's worth of samples, so float
    rounding cannot build up over a long run; on whole-number counters (tokens) it is exact.
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._points: deque[tuple[int, float | None]] = deque()  # (t, step; None: no value)
        self._last: float | None = None  # the newest valued sample
        self._valued = 0  # valued samples kept
        self._sum = 0.0  # their steps but the first's
        self._since_exact = 0  # samples dropped since the sum was last re-added

    def add(self, t: int, value: float | None) -> None:
        """Append a sample at t (epoch ms, rising) and drop those older than t - window_ms."""
        inc: float | None = None
        if value is not None and not _missing(value):
            inc = 0.0 if self._last is None else (step(self._last, value) or 0.0)
            self._last = value
            if self._valued:
                self._sum += inc
            self._valued += 1
        self._points.append((t, inc))
        while self._points[0][0] < t - self.window_ms:
            self._drop_oldest()
        if self._since_exact > len(self._points):
            self._sum = sum(inc for _, inc in itertools.islice(self._steps(), 1, None))
            self._since_exact = 0

    def _drop_oldest(self) -> None:
        _, inc = self._points.popleft()
        self._since_exact += 1
        if inc is None:
            return
        self._valued -= 1
        first = next(self._steps(), None)  # the new first valued sample: its step no longer counts
        if first is not None:
            self._sum -= first[1]

    def _steps(self) -> Iterator[tuple[int, float]]:
        return ((t, inc) for t, inc in self._points if inc is not None)

    @property
    def oldest_ms(self) -> int | None:
        """The time of the oldest sample kept (valued or not), None before the first."""
        return self._points[0][0] if self._points else None

    def rate(self, since_ms: int | None = None) -> float | None:
        """rate() of the kept samples at or after since_ms (all of them by default)."""
        if not self._points:
            return None
        if since_ms is None or since_ms <= self._points[0][0]:
            if self._valued < 2:
                return None
            first, last = next(self._steps()), next(t for t, inc in reversed(self._points) if inc is not None)
            span_s = (last - first[0]) / 1000
            return self._sum / span_s if span_s > 0 else None
        newest = itertools.takewhile(lambda p: p[0] >= since_ms, reversed(self._points))
        kept = [(t, inc) for t, inc in reversed(list(newest)) if inc is not None]
        if len(kept) < 2:
            return None
        # The first valued sample starts the count; its own step (from a sample before) is not counted.
        delta = sum(inc for _, inc in itertools.islice(kept, 1, None))
        span_s = (kept[-1][0] - kept[0][0]) / 1000
        return delta / span_s if span_s > 0 else None
