"""Per-series counter increases at scrape time, folded into one monotone counter per stored column.

Why: an inference server prints one series per engine, data-parallel rank, model or label value
(vLLM's `engine`, SGLang's `dp_rank`, Triton's `model`). Summing the series first and taking the rate
of the sum (what the store did before) turns one series' reset, NaN or late appearance into a "reset"
of the whole sum, and the reader's reset rule then counts every other series' lifetime total as new
work (4 M tok/s on one endpoint). Prometheus takes the rate of each series, then sums
(prometheus.io/docs/prometheus/latest/querying/functions/#rate; promql/functions.go extrapolatedRate);
so does this module, at scrape time.

The rule, per series (metric name + full label set, after the mapping's label filters):
- a series seen before contributes `v - prev` if `v >= prev`, else `v` (Prometheus' reset rule: the
  counter restarted from 0);
- a series seen for the first time contributes 0: it counts from its second sample, as increase()
  over a window that starts before it would (minus extrapolation);
- a NaN (or a missing sample) contributes nothing and leaves the last finite value in place, so the
  next real value is compared with the last real one;
- a series that vanished keeps its last value for when it comes back; at most `max_series` series
  are remembered per endpoint (the least recently seen are forgotten first).

The stored column is the running sum of these increases since the collector first saw the endpoint,
starting at 0. It never falls while the collector runs, so every reader keeps its ordinary per-row
reset rule, and a collector restart (the column starts again at 0) counts 0 as new work, never a
lifetime total. Cost in the store: the same int64 columns, still monotone, so they encode as before:
10 minutes of the simulated rack's 72 vLLM pages mapped at 1 Hz stored 7.49 B per serving row with
raw sums and 7.51 B with these totals plus the new dup_samples column (0.749 -> 0.682 B/sample over
10 -> 11 non-key columns). In memory: one float per series and one per column, per endpoint. The
price is that the stored value is no longer the server's own counter, so it cannot be compared with
the server's page by eye; its increases can.

Why at scrape time and not a narrow per-series table: the per-series detail is needed only to take
each increase, and a narrow table would multiply the serving rows by the series count (engines x
counters) and put per-series maths back into every reader.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

MAX_SERIES = 4096
"""Series remembered per endpoint (a vLLM page has ~10 counter series per engine)."""
MISSING_SCRAPES = 300
"""A series absent from the page for up to this many scrapes (5 min at 1 Hz) makes the row partial."""

SeriesKey = tuple[str, Hashable]
"""(stored column, the series' label set): one counter or gauge series of an endpoint."""


class SeriesCounters:
    """The per-series state of one endpoint's counters, kept across its scrapes.

    Use: `begin()` once per page, `fold(column, series)` per counter column, `see(keys)` for gauge
    series, then `missing()`; the caller reports NaN and missing series as a partial row.
    """

    def __init__(self, *, max_series: int = MAX_SERIES, missing_scrapes: int = MISSING_SCRAPES) -> None:
        """Start with no series: every counter series of the first page counts from its next sample."""
        self.max_series = max_series
        self.missing_scrapes = missing_scrapes
        self.scrapes = 0
        self.warning = ""
        """What the last page lacked or repeated ("" when nothing): the endpoint status' reason."""
        self._last: dict[SeriesKey, float] = {}
        """Last finite value of each counter series."""
        self._seen: dict[SeriesKey, int] = {}
        """Scrape number at which each series (counter or gauge) last had a sample on the page."""
        self._seen_now = 0
        self._totals: dict[str, float] = {}

    def begin(self) -> None:
        """Start a page: series not seen from here on are missing from it."""
        if len(self._seen) > self.max_series:
            self._evict()
        self.scrapes += 1
        self._seen_now = 0
        self.warning = ""

    def fold(self, column: str, series: Iterable[tuple[Hashable, float]]) -> tuple[float, int]:
        """Add each series' increase since its last finite sample to `column`'s running total.

        Args:
            column: the stored column (prompt_tokens, generation_tokens, requests_ok, preemptions).
            series: (label set, value) of each series of the column on this page.

        Returns:
            (the column's running total, how many of the series were NaN).
        """
        last = self._last
        seen = self._seen
        now = self.scrapes
        total = self._totals.get(column, 0.0)
        nans = 0
        for labels, value in series:
            key = (column, labels)
            if seen.get(key) != now:
                self._seen_now += 1
            seen[key] = now
            if value != value:
                nans += 1
                continue
            prev = last.get(key)
            if prev is not None:
                total += value - prev if value >= prev else value
            last[key] = value
        self._totals[column] = total
        return total, nans

    def see(self, column: str, labels: Iterable[Hashable]) -> None:
        """Note the gauge series of `column` on this page (for missing())."""
        seen = self._seen
        now = self.scrapes
        for label_set in labels:
            key = (column, label_set)
            if seen.get(key) != now:
                self._seen_now += 1
            seen[key] = now

    def missing(self) -> list[SeriesKey]:
        """Series seen in the last `missing_scrapes` scrapes but not on this page."""
        if self._seen_now == len(self._seen):
            return []
        now = self.scrapes
        oldest = now - self.missing_scrapes
        return [key for key, when in self._seen.items() if oldest <= when < now]

    def _evict(self) -> None:
        """Forget the least recently seen series down to max_series."""
        by_age = sorted(self._seen, key=self._seen.__getitem__)
        for key in by_age[: len(by_age) - self.max_series]:
            del self._seen[key]
            self._last.pop(key, None)
