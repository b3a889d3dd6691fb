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

Histograms take the same rule (fold_by): every bucket series (engine and `le`) and every `_sum`
series adds its increase, and the increases of one bound are summed into that bound's running total,
i.e. `sum by (le) (increase(x_bucket))` (collectors.mappings.common.histogram_totals).

State is kept per column as the last page's series in page order with their last values, so a page
of the same shape (the parser hands back the same label objects) costs one tuple comparison and a
loop over floats, no dict look-up per series: 72 vLLM pages of ~70 bucket series each fold in about
the time the old per-page bucket sums took. Series that leave a column's layout wait in `_gone` with
their last value and when they were last seen.

The stored column is the running sum of these increases since the collector first saw the endpoint,
starting at 0. It never falls while the collector runs, so every reader keeps its ordinary per-row
reset rule, and a collector restart (the column starts again at 0) counts 0 as new work, never a
lifetime total. Cost in the store: the same int64 columns, still monotone, so they encode as before:
10 minutes of the simulated rack's 72 vLLM pages mapped at 1 Hz stored 7.49 B per serving row with
raw sums and 7.51 B with these totals plus the new dup_samples column (0.749 -> 0.682 B/sample over
10 -> 11 non-key columns). In memory: a float and a list slot per series, one float per column or
bucket, per endpoint. The price is that the stored value is no longer the server's own counter, so
it cannot be compared with the server's page by eye; its increases can.

Why at scrape time and not a narrow per-series table: the per-series detail is needed only to take
each increase, and a narrow table would multiply the serving rows by the series count (engines x
counters) and put per-series maths back into every reader.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from operator import add, sub

MAX_SERIES = 4096
"""Series remembered per endpoint (a vLLM page has ~10 counter series and ~70 bucket series per engine)."""
MISSING_SCRAPES = 300
"""A series absent from the page for up to this many scrapes (5 min at 1 Hz) makes the row partial."""

SeriesKey = tuple[str, Hashable]
"""(stored column, the series' label set): one counter or gauge series of an endpoint."""

Series = Sequence[tuple[Hashable, float]]
"""(label set, value) of each series of a column on one page, in page order."""


class ColumnState:
    """The series of one column on the last page that had it, in page order, and their state.

    A new object whenever the column's series change (its layout): group_keys and group_sizes are
    fixed for its life, so a caller may key what it derives from them on the object itself.
    """

    __slots__ = (
        "at",
        "group_index",
        "group_keys",
        "group_sizes",
        "group_totals",
        "labels",
        "last",
        "one_each",
    )

    def __init__(self, labels: tuple[Hashable, ...], last: list[float]) -> None:
        self.labels = labels
        self.last = last
        """Last finite value of each series (NaN: none yet)."""
        self.at = 0
        """Scrape number of the last page that had the column."""
        self.group_keys: list[Hashable] = []
        self.group_index: list[int] = []
        self.group_sizes: list[int] = []
        self.group_totals: list[float] = []
        """Running total of each group (fold_by), aligned with group_keys."""
        self.one_each = False
        """Whether each series is a group of its own, in page order (group_index is 0, 1, 2, ...)."""

    def group(self, group: Callable[[Hashable], Hashable], totals: dict[Hashable, float]) -> None:
        """Assign each series to a group (fold_by), once per layout; `totals` are the running ones."""
        where: dict[Hashable, int] = {}
        for labels in self.labels:
            key = group(labels)
            i = where.get(key)
            if i is None:
                i = where[key] = len(self.group_keys)
                self.group_keys.append(key)
                self.group_sizes.append(0)
                self.group_totals.append(totals.get(key, 0.0))
            self.group_index.append(i)
            self.group_sizes[i] += 1
        self.one_each = self.group_index == list(range(len(self.group_index)))


class SeriesCounters:
    """The per-series state of one endpoint's counters, kept across its scrapes.

    Use: `begin()` once per page, `fold(column, series)` per counter column, `fold_by(...)` per
    histogram part, `see(column, labels)` for gauge series, then `missing()`; the caller reports NaN
    and missing series as a partial row.
    """

    def __init__(self, *, max_series: int = MAX_SERIES, missing_scrapes: int = MISSING_SCRAPES) -> None:
        """Start with no series: every counter series of the first page counts from its next sample."""
        self.max_series = max_series
        self.missing_scrapes = missing_scrapes
        self.scrapes = 0
        self.warning = ""
        """What the last page lacked or repeated ("" when nothing): the endpoint status' reason."""
        self._columns: dict[str, ColumnState] = {}
        self._gone: dict[SeriesKey, tuple[float, int]] = {}
        """Series that left their column's layout: (last finite value or NaN, scrape last seen)."""
        self._unwatched: set[str] = set()
        """Columns whose series missing() does not report (histogram parts)."""
        self._totals: dict[str, float] = {}
        """Running total of each fold() column."""
        self._group_totals: dict[str, dict[Hashable, float]] = {}
        """Running totals of each fold_by() column's groups, as of its last change of layout."""

    def begin(self) -> None:
        """Start a page: series not seen from here on are missing from it."""
        if len(self._gone) + sum(len(c.labels) for c in self._columns.values()) > self.max_series:
            self._evict()
        self.scrapes += 1
        self.warning = ""

    def fold(self, column: str, series: Series) -> tuple[float, int]:
        """Add each series' increase since its last finite sample to `column`'s running total.

        Args:
            column: the stored column (prompt_tokens, generation_tokens, requests_ok, preemptions).
            series: (label set, value) of each series of the column on this page.

        Returns:
            (the column's running total, how many of the series were NaN).
        """
        _, increases, nans = self._advance(column, [labels for labels, _ in series], [v for _, v in series])
        total = self._totals[column] = self._totals.get(column, 0.0) + sum(increases)
        return total, nans

    def fold_by(
        self,
        column: str,
        labels: Sequence[Hashable],
        values: Sequence[float],
        group: Callable[[Hashable], Hashable],
    ) -> ColumnState:
        """Like fold, with one running total per group of series (a histogram's buckets by `le`).

        The column's series are not reported by missing(): the group totals carry on over the series
        the page has, whichever those are.

        Args:
            column: a name for this part of the page (e.g. "ttft_bucket"), distinct from other columns.
            labels: the label set of each series on this page, in page order.
            values: their values.
            group: a series' group from its label set; called once per series per page layout.

        Returns:
            The column: its groups (group_keys) in order of first appearance among this page's
            series, each one's running total (group_totals) and how many series fold into it
            (group_sizes).
        """
        self._unwatched.add(column)
        col, increases, _ = self._advance(column, labels, values, group)
        totals = col.group_totals
        if col.one_each:  # each series its own group, in page order (one engine's buckets)
            totals[:] = map(add, totals, increases)
        else:
            for i, increase in zip(col.group_index, increases, strict=True):
                totals[i] += increase
        return col

    def see(self, column: str, labels: Sequence[Hashable]) -> None:
        """Note the gauge series of `column` on this page (for missing())."""
        self._layout(column, tuple(labels), None)

    def missing(self) -> list[SeriesKey]:
        """Series seen in the last `missing_scrapes` scrapes but not on this page (histograms aside)."""
        now = self.scrapes
        oldest = now - self.missing_scrapes
        out: list[SeriesKey] = []
        for column, col in self._columns.items():
            if oldest <= col.at < now and column not in self._unwatched:
                out += [(column, labels) for labels in col.labels]
        out += [k for k, (_, at) in self._gone.items() if oldest <= at < now and k[0] not in self._unwatched]
        return out

    def _advance(
        self,
        column: str,
        labels: Sequence[Hashable],
        values: Sequence[float],
        group: Callable[[Hashable], Hashable] | None = None,
    ) -> tuple[ColumnState, list[float], int]:
        """Each series' increase on this page (Prometheus' rule), updating its last value.

        Returns:
            (the column, the increase of each series in page order, how many series were NaN).
        """
        col = self._layout(column, tuple(labels), group)
        last = col.last
        increases = list(map(sub, values, last))
        # The usual page: every series seen before and finite, none fell. Each increase is then the
        # loop's `value - prev`, and their sum is finite: a NaN value or a first sight (NaN prev)
        # makes it NaN, an infinity inf or NaN; a fall shows in the minimum.
        total = sum(increases)
        if total - total == 0.0 and (not increases or min(increases) >= 0.0):
            last[:] = values
            return col, increases, 0
        increases = []
        append = increases.append
        nans = 0
        for i, value in enumerate(values):
            if value != value:
                nans += 1
                append(0.0)
                continue
            prev = last[i]
            # First sight counts 0; a fall means the counter restarted from 0 (promql/functions.go).
            append(0.0 if prev != prev else value - prev if value >= prev else value)
            last[i] = value
        return col, increases, nans

    def _layout(
        self, column: str, labels: tuple[Hashable, ...], group: Callable[[Hashable], Hashable] | None
    ) -> ColumnState:
        """The column's state for this page's series, rebuilt when they differ from the last page's.

        A page of the same shape as the last (the usual case: the parser hands back the same label
        objects) costs one tuple comparison; otherwise the series that left go to `_gone` and the
        ones that come back take their last value from there.
        """
        col = self._columns.get(column)
        if col is None or col.labels != labels:
            totals = self._group_totals.setdefault(column, {})
            if col is not None:
                totals.update(zip(col.group_keys, col.group_totals, strict=True))
            col = self._relayout(column, col, labels)
            if group is not None:
                col.group(group, totals)
        col.at = self.scrapes
        return col

    def _relayout(self, column: str, old: ColumnState | None, labels: tuple[Hashable, ...]) -> ColumnState:
        kept: dict[Hashable, float] = {}
        gone = self._gone
        if old is not None:
            kept = dict(zip(old.labels, old.last, strict=True))
            staying = set(labels)
            for label_set, value in kept.items():
                if label_set not in staying:
                    gone[column, label_set] = (value, old.at)
        last = []
        for label_set in labels:
            value = kept.get(label_set)
            if value is None:
                value = gone.pop((column, label_set), (math.nan, 0))[0]
            last.append(value)
        col = self._columns[column] = ColumnState(labels, last)
        return col

    def _evict(self) -> None:
        """Forget the least recently seen series that left their columns, down to max_series in all."""
        live = sum(len(c.labels) for c in self._columns.values())
        by_age = sorted(self._gone, key=lambda key: self._gone[key][1])
        for key in by_age[: max(0, len(by_age) + live - self.max_series)]:
            del self._gone[key]
