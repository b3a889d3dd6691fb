"""Shared pieces of the page mappings: name normalisation, checked integer columns, histogram totals."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple
from weakref import WeakKeyDictionary

import pyarrow as pa

from collectors.agent_names import DCGM_BLANK_MIN
from collectors.series_counters import ColumnState, SeriesCounters

if TYPE_CHECKING:
    from collectors.promtext import Family, Labels, Sample
from storage.frame import batch_from_columns
from storage.schemas import TABLES

INF = math.inf


class MappingError(ValueError):
    """A page that parses but cannot be mapped (e.g. a GPU that cannot be placed in the rack)."""


def canonical(name: str) -> str:
    """A metric name with `:` read as `_` (`vllm:x` and `vllm_x` are the same metric on the wire)."""
    return name.replace(":", "_")


def by_canonical(families: Mapping[str, Family]) -> dict[str, Family]:
    """Index families by canonical name (the first of two spellings wins)."""
    index: dict[str, Family] = {}
    for name, family in families.items():
        index.setdefault(canonical(name), family)
    return index


def first_of(index: Mapping[str, Family], names: Iterable[str]) -> Family | None:
    """The first family present among alias names (current name first, then older ones)."""
    for name in names:
        family = index.get(name)
        if family is not None:
            return family
    return None


def int_range(column_type: pa.DataType) -> tuple[int, int]:
    """The value range of an Arrow integer type."""
    bits = column_type.bit_width
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def column_ranges(table: str) -> dict[str, tuple[int, int]]:
    """Integer value ranges of a table's integer columns, by column name."""
    return {f.name: int_range(f.type) for f in TABLES[table] if pa.types.is_integer(f.type)}


def checked_int(value: float, lo: int, hi: int) -> int | None:
    """round(value) if it is a real reading that fits [lo, hi], else None (NaN, DCGM blanks, junk)."""
    if value != value or value >= DCGM_BLANK_MIN or not lo <= value <= hi:
        return None
    return round(value)


def checked_ints(values: Iterable[float], lo: int, hi: int, missing: int | None = None) -> list[int | None]:
    """checked_int over many values in one comprehension (`missing` where it gives None)."""
    blank = DCGM_BLANK_MIN
    return [round(v) if v == v and v < blank and lo <= v <= hi else missing for v in values]


_LE_CACHE: dict[str, float] = {}


def bound(text: str) -> float:
    """A histogram `le` label as a float ("1", "1.0", "+Inf" ...); raises ValueError if it is none."""
    value = _LE_CACHE.get(text)
    if value is None:
        value = _LE_CACHE[text] = float(text)
        if len(_LE_CACHE) > 10_000:
            _LE_CACHE.clear()
    return value


class HistogramTotals(NamedTuple):
    """A histogram's running totals after one page (histogram_totals)."""

    les: list[float]
    """Bucket bounds, ascending, +Inf last (scaled)."""
    counts: list[float]
    """Each bound's running count, aligned with les."""
    sum: float | None
    """The running sum (scaled), None without `_sum` series."""


def histogram_totals(
    family: Family,
    series: SeriesCounters,
    column: str,
    scale: float = 1.0,
    keep: Callable[[Labels], bool] | None = None,
) -> HistogramTotals:
    """A histogram family's buckets and sum as running totals of per-series increases.

    Each series (the family's full label set, `le` included: one per engine and bound) adds its
    increase since the endpoint's last page with Prometheus' reset rule (collectors.series_counters),
    the bucket series of one bound then fold into one total, as `sum by (le) (increase(x_bucket))`
    does. One engine's restart resets all its buckets together, so the totals stay cumulative in
    `le` and the other engines' lifetime counts never count as new. Only bounds that every series
    has are kept (their sums are cumulative; engines make bounds configurable).

    Args:
        family: a parsed histogram family.
        series: the endpoint's counter state.
        column: the histogram's name in that state (e.g. the serving_hist metric).
        scale: multiplies bounds (0.001 for a histogram in milliseconds) and the sum.
        keep: which series count (None: all); the others are repeats of a kept one (SGLang's
            scheduler ranks each observe the same requests).

    Returns:
        The bounds ascending with +Inf last, their running counts and the running sum (None without
        `_sum` series); no bounds and no sum without a +Inf bucket.
    """
    plan = _plan(family.samples, series, column, keep)
    values = list(map(_value_of, family.samples))
    buckets = series.fold_by(column + "_bucket", plan.bucket_labels, plan.buckets(values), _le)
    kept = plan.kept(buckets, scale)
    if kept is None:  # bounds that tie once scaled, or NaN: sorted with their totals, page by page
        keys, totals, sizes = buckets.group_keys, buckets.group_totals, buckets.group_sizes
        everywhere = next(size for le, size in zip(keys, sizes, strict=True) if le == INF)
        pairs = sorted(
            (le * scale, t) for le, t, n in zip(keys, totals, sizes, strict=True) if n == everywhere
        )
        les, counts = [le for le, _ in pairs], [t for _, t in pairs]
    else:
        les, counts = kept[0].copy(), kept[1](buckets.group_totals)
    if not les:
        return HistogramTotals([], [], None)
    if not plan.sum_labels:
        return HistogramTotals(les, counts, None)
    sums = series.fold_by(column + "_sum", plan.sum_labels, plan.sums(values), _same)
    (total_sum,) = sums.group_totals  # one group: every `_sum` series
    return HistogramTotals(les, counts, total_sum * scale)


def _kept_bounds(groups: ColumnState, scale: float) -> list[tuple[float, int]] | None:
    """(scaled bound, group index) of the bounds every series has, ascending (+Inf last); [] without a
    +Inf bucket; None when two bounds scale to one float or one is NaN (their order then depends on
    the totals: see histogram_totals). Depends on the column's layout only, never on the values.
    """
    keys, sizes = groups.group_keys, groups.group_sizes
    everywhere = next((size for le, size in zip(keys, sizes, strict=True) if le == INF), 0)
    if not everywhere:
        return []
    kept = sorted(
        (le * scale, i) for i, (le, size) in enumerate(zip(keys, sizes, strict=True)) if size == everywhere
    )
    scaled = [le for le, _ in kept]
    if len(set(scaled)) < len(scaled) or any(le != le for le in scaled):
        return None
    return kept


_name_of = itemgetter(0)
_labels_of = itemgetter(1)
_value_of = itemgetter(2)


class _HistogramPlan:
    """Which samples of a histogram family are buckets (with a numeric `le`) and which are sums.

    That depends on the samples' names and label sets only, so it is kept per endpoint and column
    while a page has the very same ones (a page re-read from its shape hands back the same objects:
    collectors.promtext_shape), and the per-sample checks run once per change of the page's series.
    """

    def __init__(self, names: list[str], labels: list[Labels], keep: Callable[[Labels], bool] | None) -> None:
        self.names, self.labels, self.keep = names, labels, keep
        buckets: list[int] = []
        sums: list[int] = []
        for i, (name, label_set) in enumerate(zip(names, labels, strict=True)):
            if keep is not None and not keep(label_set):
                continue
            if name.endswith("_bucket"):
                if _has_bound(label_set):  # else: no numeric `le`, passed by the parser; PromQL skips it
                    buckets.append(i)
            elif name.endswith("_sum"):
                sums.append(i)
        self.bucket_labels = tuple(labels[i] for i in buckets)
        self.sum_labels = tuple(labels[i] for i in sums)
        self.buckets = _picker(buckets)
        self.sums = _picker(sums)
        self._kept: tuple[ColumnState, float, list[float], Callable[[Sequence[float]], list[float]]] | None
        self._kept = None
        """The last bucket layout's kept bounds and their picker (kept while its ColumnState is)."""

    def kept(
        self, groups: ColumnState, scale: float
    ) -> tuple[list[float], Callable[[Sequence[float]], list[float]]] | None:
        """A bucket layout's kept bounds (ascending, +Inf last) and the picker of their totals, once
        per layout (a ColumnState's bounds and sizes never change); None as _kept_bounds says."""
        cached = self._kept
        if cached is not None and cached[0] is groups and cached[1] == scale:
            return cached[2], cached[3]
        kept = _kept_bounds(groups, scale)
        if kept is None:
            return None
        les, pick = [le for le, _ in kept], _picker([i for _, i in kept])
        self._kept = (groups, scale, les, pick)
        return les, pick


_PLANS: WeakKeyDictionary[SeriesCounters, dict[str, _HistogramPlan]] = WeakKeyDictionary()
"""Each endpoint's (its counter state's) histogram plans, by column."""


def _plan(
    samples: Sequence[Sample], series: SeriesCounters, column: str, keep: Callable[[Labels], bool] | None
) -> _HistogramPlan:
    """The family's plan: last page's while its samples' names and label sets are the same objects."""
    names, labels = list(map(_name_of, samples)), list(map(_labels_of, samples))
    plans = _PLANS.setdefault(series, {})
    plan = plans.get(column)
    # Lists compare item by item, identity first: the same objects cost a pointer compare each.
    if plan is None or plan.keep != keep or plan.names != names or plan.labels != labels:
        plan = plans[column] = _HistogramPlan(names, labels, keep)
    return plan


def _picker(indices: Sequence[int]) -> Callable[[Sequence[float]], list[float]]:
    """The items at `indices`, as a list."""
    if not indices:
        return lambda seq: []
    if len(indices) == 1:
        index = indices[0]
        return lambda seq: [seq[index]]
    pick = itemgetter(*indices)
    return lambda seq: list(pick(seq))


def _has_bound(labels: Labels) -> bool:
    """Whether a bucket has a numeric `le` (promql/functions.go histogram_quantile skips the others)."""
    text = labels.get("le")
    if text is None:
        return False
    try:
        bound(text)
    except ValueError:
        return False
    return True


def _le(labels: Hashable) -> float:
    return bound(labels["le"])  # type: ignore[index]


def _same(labels: Hashable) -> None:
    return None


class ColumnBuilder:
    """Rows of one store table collected as column lists, for one batch over many pages."""

    def __init__(self, table: str) -> None:
        """Start an empty builder for a table of storage.schemas.TABLES (its `ts` is set at build)."""
        self.table = table
        self.names = [f.name for f in TABLES[table] if f.name != "ts"]
        self.columns: dict[str, list[Any]] = {name: [] for name in self.names}

    def __len__(self) -> int:
        """Rows collected so far."""
        return len(self.columns[self.names[0]])

    def add(self, row: Mapping[str, Any]) -> None:
        """Append one row (absent columns are null)."""
        for name in self.names:
            self.columns[name].append(row.get(name))

    def extend(self, columns: Mapping[str, Sequence[Any]], rows: int) -> None:
        """Append `rows` rows given as columns (absent columns are null)."""
        for name in self.names:
            values = columns.get(name)
            self.columns[name].extend(values if values is not None else [None] * rows)

    def batch(self, ts_ms: int) -> pa.RecordBatch:
        """The collected rows as a record batch, every row stamped `ts_ms`."""
        columns: dict[str, Sequence[Any]] = {"ts": [ts_ms] * len(self)}
        columns.update(self.columns)
        return batch_from_columns(self.table, columns)


def labels_value(labels: Labels, *names: str) -> str | None:
    """The first of several label spellings present (`Hostname` / `hostname`, `UUID` / `uuid`)."""
    for name in names:
        value = labels.get(name)
        if value is not None:
            return value
    return None
