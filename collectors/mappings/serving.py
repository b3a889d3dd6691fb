"""Inference-server pages (vLLM, SGLang, TensorRT-LLM, Triton, Dynamo) -> `serving` and `serving_hist` rows.

Where each engine keeps its figures, and the upstream source file and commit each follows, is in
collectors.mappings.engines (one module per engine). Rules that matter:
- `:` and `_` after the engine prefix are the same metric (names are compared in canonical form).
- Renamed metrics are read through alias lists, current name first (vLLM kv_cache_usage_perc <-
  gpu_cache_usage_perc, inter_token_latency_seconds <- time_per_output_token_seconds).
- Counters are taken per series of their exact family (vLLM's `engine` label, dp ranks, models):
  each series' increase since the endpoint's previous page, with Prometheus' reset rule, is added to
  a running total per column (collectors.series_counters, which says why). The stored counter
  columns are these totals: monotone from 0 at the collector's first sight of the endpoint.
  `_created`, `_by_reason` and `_by_source` families are other families and are never folded in.
- `requests_ok` counts finished requests except those finished as `abort` or `error`.
- `cached_tokens` counts prompt tokens served from the prefix cache: the window's hit rate is its
  increase over prompt_tokens' increase, for every engine that has both.
- A series repeated on the page keeps its first sample (the parser drops and counts the repeats,
  as Prometheus does): `dup_samples` and the endpoint's warning say how many.
- A NaN sample, or a series the endpoint printed on a recent page but not on this one, makes the
  row PARTIAL (EndpointState.PARTIAL): the gauges of the series that answered are kept (summed,
  KV usage averaged) and the row says it covers only part of the server.
- Histograms too: each bucket series (engine, bound) and each `_sum` series adds its increase to
  a running total per (metric, le) and per metric (common.histogram_totals), so one engine's
  restart never counts the other engines' lifetime observations as new, and every window's
  percentiles are those of `sum by (le) (increase(x_bucket[w]))`.
- Histogram bounds are read from each page (engines make them configurable); Triton's histogram is
  in milliseconds and is stored in seconds like the others.
- SGLang scheduler gauges repeat per tensor/pipeline/expert rank: one value per `dp_rank` (and
  other labels) is kept, then summed (KV usage: averaged); its scheduler histograms keep rank 0's.
- A page without series for a column its engine always has (EngineSpec.required: vLLM's and
  SGLang's gauges) is PARTIAL and says which: it parsed, but not as the engine writes it.
- A Dynamo frontend started with DYN_METRICS_PREFIX is read through its configured prefix.
Rates and percentiles are computed at read time (collectors.serving_math).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from collectors.mappings.common import (
    ColumnBuilder,
    MappingError,
    by_canonical,
    checked_int,
    checked_ints,
    column_ranges,
    first_of,
    histogram_totals,
)
from collectors.mappings.engines import dynamo
from collectors.mappings.serving_engines import ENGINES, EngineSpec, detect_engine, serving_want
from collectors.promtext import ExpositionParser, Family, Labels, parse
from collectors.series_counters import SeriesCounters
from storage.frame import Frame
from storage.schemas import Q4_SCALE, EndpointState

_INT32 = column_ranges("serving")["running"]
_INT64 = column_ranges("serving")["prompt_tokens"]
_NOT_OK = frozenset({"abort", "error"})


def _matches(labels: Mapping[str, str], where: tuple[tuple[str, str], ...]) -> bool:
    return all(labels.get(k) == v for k, v in where)


Series = list[tuple[Labels, float]]
"""(label set, value) of each series a column reads on one page."""


def _values(series: Series, ranks: tuple[str, ...]) -> list[float]:
    """The series' values, one per label set once the rank labels are dropped (SGLang's repeats)."""
    if not ranks:
        return [v for _, v in series]
    kept: dict[frozenset[tuple[str, str]], float] = {}
    for labels, value in series:
        kept.setdefault(frozenset((k, v) for k, v in labels.items() if k not in ranks), value)
    return list(kept.values())


def _counter_series(family: Family, column: str, spec: EngineSpec) -> Series:
    """The series of a counter column: a histogram's `_sum` (Triton, Dynamo tokens), else the family's."""
    if family.type == "histogram":
        return list(family.values(family.name + "_sum"))
    if column == "requests_ok":
        where = spec.requests_where
        return [
            (labels, v)
            for labels, v in family.values()
            if _matches(labels, where) and labels.get("finished_reason") not in _NOT_OK
        ]
    return list(family.values())


class _PageCheck:
    """What one page lacked: the columns with a NaN series, for the row's state and warning."""

    def __init__(self, series: SeriesCounters) -> None:
        self.series = series
        self.nan: dict[str, int] = {}
        self.absent: list[str] = []
        """Required columns and families (EngineSpec.required) without a series on the page."""
        self.hint = ""

    def counters(self, index: Mapping[str, Family], spec: EngineSpec) -> dict[str, int | None]:
        """Each counter column's running total (None: the page has no such family)."""
        columns = {
            "prompt_tokens": spec.prompt_tokens,
            "generation_tokens": spec.generation_tokens,
            "requests_ok": spec.requests,
            "preemptions": spec.preemptions,
            "cached_tokens": spec.cached_tokens,
        }
        totals: dict[str, int | None] = {}
        for column, aliases in columns.items():
            family = first_of(index, aliases)
            if family is None:
                totals[column] = None
                continue
            total, nans = self.series.fold(column, _counter_series(family, column, spec))
            if nans:
                self.nan[column] = nans
            totals[column] = checked_int(total, *_INT64)
        return totals

    def gauge(self, column: str, family: Family | None, where: tuple[tuple[str, str], ...] = ()) -> Series:
        """A gauge column's finite series (NaN ones are counted, every one is noted as seen)."""
        if family is None:
            return []
        read = [(labels, v) for labels, v in family.values() if _matches(labels, where)]
        self.series.see(column, (labels for labels, _ in read))
        finite = [(labels, v) for labels, v in read if v == v]
        if len(finite) < len(read):
            self.nan[column] = self.nan.get(column, 0) + len(read) - len(finite)
        return finite

    def verdict(self, duplicates: int) -> EndpointState:
        """PARTIAL if a series was NaN or missing; sets the series state's warning."""
        missing: dict[str, int] = {}
        for column, _ in self.series.missing():
            missing[column] = missing.get(column, 0) + 1
        parts = []
        if self.absent:
            parts.append(f"no series for {', '.join(self.absent)}" + (f" ({self.hint})" if self.hint else ""))
        if self.nan:
            parts.append(f"{sum(self.nan.values())} series NaN ({', '.join(sorted(self.nan))})")
        if missing:
            parts.append(f"{sum(missing.values())} series missing ({', '.join(sorted(missing))})")
        if duplicates:
            parts.append(f"{duplicates} duplicate samples dropped (first kept)")
        self.series.warning = "; ".join(parts)
        return EndpointState.PARTIAL if self.nan or missing or self.absent else EndpointState.OK


class ServingRows:
    """`serving` and `serving_hist` rows of many endpoints, built into one frame per tick."""

    def __init__(self) -> None:
        """Start with no rows."""
        self.serving = ColumnBuilder("serving")
        self.hist = ColumnBuilder("serving_hist")

    def frame(self, ts_ms: int) -> Frame:
        """The rows so far as a Frame at `ts_ms` (tables without rows are left out)."""
        batches = {}
        if len(self.serving):
            batches["serving"] = self.serving.batch(ts_ms)
        if len(self.hist):
            batches["serving_hist"] = self.hist.batch(ts_ms)
        return Frame(ts_ms=ts_ms, batches=batches)


def map_serving(
    page: str | Mapping[str, Family],
    endpoint: str,
    ts_ms: int,
    *,
    engine: str | None = None,
    parser: ExpositionParser | None = None,
    series: SeriesCounters | None = None,
    metrics_prefix: str | None = None,
) -> Frame:
    """Map one inference server's page to a `serving` row and its `serving_hist` rows at `ts_ms`.

    Args:
        page: the page text, or families already parsed from it.
        endpoint: the endpoint's instance name (serving.endpoint).
        ts_ms: the tick.
        engine: one of ENGINES; detected from the page's metric names when None.
        parser: the endpoint's own parser (see ExpositionParser), else a shared one.
        series: the endpoint's counter state, kept across its pages. Without one the page is a first
            sight: every counter column and histogram count present on the page is 0 (a counter's
            first sample is no increase, collectors.series_counters), never the sum of the series'
            lifetime totals.
        metrics_prefix: a Dynamo frontend's DYN_METRICS_PREFIX (the page is then Dynamo's).

    Raises:
        MappingError: the engine is unknown or cannot be detected.
        ExpositionError: the page text is malformed.
    """
    rows = ServingRows()
    add_serving(
        page, endpoint, rows, engine=engine, parser=parser, series=series, metrics_prefix=metrics_prefix
    )
    return rows.frame(ts_ms)


def add_serving(
    page: str | Mapping[str, Family],
    endpoint: str,
    rows: ServingRows,
    *,
    engine: str | None = None,
    parser: ExpositionParser | None = None,
    series: SeriesCounters | None = None,
    metrics_prefix: str | None = None,
) -> str:
    """Like map_serving, but add the rows to `rows` (one frame over many endpoints); returns the engine."""
    if engine is None:
        engine = "dynamo" if metrics_prefix is not None else detect_engine(page)
        if engine is None:
            raise MappingError(f"{endpoint}: no vLLM, SGLang, TensorRT-LLM, Triton or Dynamo metrics")
    spec = ENGINES.get(engine)
    if spec is None:
        raise MappingError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    if isinstance(page, str):
        want = serving_want(engine, metrics_prefix)
        families = (parser.parse if parser is not None else parse)(page, want)
    else:
        families = page
    index = by_canonical(families)
    if metrics_prefix is not None and engine == "dynamo":
        index = dynamo.unprefixed(index, metrics_prefix)
    state = series if series is not None else SeriesCounters()
    rows.serving.add(serving_row(index, spec, endpoint, state))
    keep = spec.first_rank if spec.rank_labels else None
    for metric, aliases in spec.hists:
        family = first_of(index, aliases)
        if family is None or family.type != "histogram":
            continue
        totals = histogram_totals(family, state, metric, spec.hist_scale, keep)
        n = len(totals.les)
        if not n:
            continue
        rows.hist.extend(
            {
                "endpoint": [endpoint] * n,
                "metric": [metric] * n,
                "le": totals.les,
                "count": checked_ints(totals.counts, *_INT64, missing=0),
                "sum_s": [None] * (n - 1) + [totals.sum],
            },
            n,
        )
    return engine


def serving_row(
    index: Mapping[str, Family], spec: EngineSpec, endpoint: str, series: SeriesCounters
) -> dict[str, object]:
    """The `serving` row (without ts) of one page, from its families indexed by canonical name.

    `series` is the endpoint's counter state: the counters are its running totals after this page,
    and its `warning` says afterwards what the page lacked or repeated.
    """
    series.begin()
    check = _PageCheck(series)
    counters = check.counters(index, spec)
    ranks = spec.rank_labels
    waiting = check.gauge("waiting", first_of(index, spec.waiting), spec.waiting_where)
    if spec.name == "triton" and not waiting:
        waiting = check.gauge("waiting", index.get("nv_inference_pending_request_count"))
    waiting_values = _values(waiting, ranks)
    for name in spec.waiting_extra:
        # each queue's own column: its series are deduplicated over ranks apart from the others'
        waiting_values += _values(check.gauge(f"waiting ({name})", index.get(name)), ranks)
    if spec.name == "dynamo":
        running = dynamo.running(index, check.gauge, waiting)
        kv_values = dynamo.kv_use(index, check.gauge)
    else:
        running = check.gauge("running", first_of(index, spec.running), spec.running_where)
        kv_values = _values(check.gauge("kv_cache", first_of(index, spec.kv), spec.kv_where), ranks)
    running_values = _values(running, ranks)
    row: dict[str, object] = {
        "endpoint": endpoint,
        "engine": spec.name,
        "model": _models(index, spec),
        **counters,
        "running": checked_int(sum(running_values), *_INT32) if running_values else None,
        "waiting": checked_int(sum(waiting_values), *_INT32) if waiting_values else None,
        "kv_cache_q4": (
            checked_int(sum(kv_values) / len(kv_values) * Q4_SCALE, 0, Q4_SCALE) if kv_values else None
        ),
    }
    check.absent = spec.absent(row, index)
    check.hint = spec.hint
    wanted = spec.wanted()
    duplicates = sum(f.duplicates for name, f in index.items() if name in wanted)
    row["dup_samples"] = duplicates
    row["state"] = int(check.verdict(duplicates))
    return row


def _models(index: Mapping[str, Family], spec: EngineSpec) -> str | None:
    """The model names on the page's core families, sorted and comma-joined."""
    names: set[str] = set()
    families: Iterable[tuple[str, ...]] = (spec.generation_tokens, spec.requests, spec.running, spec.waiting)
    for aliases in families:
        family = first_of(index, aliases)
        if family is None:
            continue
        for _, labels, _, _ in family.samples:
            for label in spec.model_labels:
                value = labels.get(label)
                if value:
                    names.add(value)
    return ",".join(sorted(names)) or None
