"""Inference-server pages (vLLM, SGLang, TensorRT-LLM, Triton, Dynamo) -> `serving` and `serving_hist` rows.

Names come from shared/reference/serving.md (sections 1-5). Rules that matter:
- `:` and `_` after the engine prefix are the same metric (names are compared in canonical form).
- Renamed metrics are read through alias lists, current name first (vLLM kv_cache_usage_perc <-
  gpu_cache_usage_perc, inter_token_latency_seconds <- time_per_output_token_seconds).
- Counters are summed over every series of their exact family (vLLM's `engine` label, models);
  `_created`, `_by_reason` and `_by_source` families are other families and are never folded in.
- `requests_ok` counts finished requests except those finished as `abort` or `error`.
- Histogram bounds are read from each page (engines make them configurable); Triton's histogram is
  in milliseconds and is stored in seconds like the others.
- SGLang scheduler gauges repeat per tensor/pipeline/expert rank: one value per `dp_rank` (and
  other labels) is kept, then summed (KV usage: averaged).
Counters are stored raw; rates and percentiles are computed at read time (collectors.serving_math).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from collectors.mappings.common import (
    ColumnBuilder,
    MappingError,
    by_canonical,
    canonical,
    checked_int,
    checked_ints,
    column_ranges,
    first_of,
    histogram_total,
)
from collectors.promtext import ExpositionParser, Family, parse
from storage.frame import Frame
from storage.schemas import Q4_SCALE, EndpointState

_INT32 = column_ranges("serving")["running"]
_INT64 = column_ranges("serving")["prompt_tokens"]
_SGLANG_RANKS = ("tp_rank", "pp_rank", "moe_ep_rank")
_NOT_OK = frozenset({"abort", "error"})


@dataclass(frozen=True)
class EngineSpec:
    """Where one engine keeps each serving column (canonical family names, aliases in order).

    Attributes:
        name: the engine as stored in serving.engine.
        prefixes: canonical name prefixes that identify the engine's page.
        model_labels: labels that name the model.
        prompt_tokens / generation_tokens: counter families, or histograms of tokens per request
            (Triton, Dynamo), whose `_sum` is then the token counter.
        requests: counter family of finished requests (label filters in `requests_where`).
        running / waiting / kv: gauges (label filters in the *_where maps).
        hists: histogram families by serving_hist.metric (ttft, itl, e2e).
        hist_scale: multiplies bounds and sums into seconds.
    """

    name: str
    prefixes: tuple[str, ...]
    model_labels: tuple[str, ...]
    prompt_tokens: tuple[str, ...] = ()
    generation_tokens: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()
    requests_where: tuple[tuple[str, str], ...] = ()
    preemptions: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    running_where: tuple[tuple[str, str], ...] = ()
    waiting: tuple[str, ...] = ()
    waiting_where: tuple[tuple[str, str], ...] = ()
    kv: tuple[str, ...] = ()
    kv_where: tuple[tuple[str, str], ...] = ()
    hists: tuple[tuple[str, tuple[str, ...]], ...] = ()
    hist_scale: float = 1.0

    def wanted(self) -> frozenset[str]:
        """Canonical names of every family this engine's mapping reads."""
        names = [
            *self.prompt_tokens,
            *self.generation_tokens,
            *self.requests,
            *self.preemptions,
            *self.running,
            *self.waiting,
            *self.kv,
        ]
        for _, aliases in self.hists:
            names.extend(aliases)
        if self.name == "dynamo":
            names.append("dynamo_frontend_inflight_requests")
        if self.name == "triton":
            names.append("nv_inference_pending_request_count")
        return frozenset(names)


ENGINES: dict[str, EngineSpec] = {
    "vllm": EngineSpec(
        name="vllm",
        prefixes=("vllm_",),
        model_labels=("model_name",),
        prompt_tokens=("vllm_prompt_tokens_total",),
        generation_tokens=("vllm_generation_tokens_total",),
        requests=("vllm_request_success_total",),
        preemptions=("vllm_num_preemptions_total",),
        running=("vllm_num_requests_running",),
        waiting=("vllm_num_requests_waiting",),
        kv=("vllm_kv_cache_usage_perc", "vllm_gpu_cache_usage_perc"),
        hists=(
            ("ttft", ("vllm_time_to_first_token_seconds",)),
            ("itl", ("vllm_inter_token_latency_seconds", "vllm_time_per_output_token_seconds")),
            ("e2e", ("vllm_e2e_request_latency_seconds",)),
        ),
    ),
    "sglang": EngineSpec(
        name="sglang",
        prefixes=("sglang_",),
        model_labels=("model_name",),
        prompt_tokens=("sglang_prompt_tokens_total",),
        generation_tokens=("sglang_generation_tokens_total",),
        requests=("sglang_num_requests_total",),
        running=("sglang_num_running_reqs",),
        waiting=("sglang_num_queue_reqs",),
        kv=("sglang_token_usage",),
        hists=(
            ("ttft", ("sglang_time_to_first_token_seconds",)),
            ("itl", ("sglang_inter_token_latency_seconds", "sglang_time_per_output_token_seconds")),
            ("e2e", ("sglang_e2e_request_latency_seconds",)),
        ),
    ),
    "trtllm": EngineSpec(
        name="trtllm",
        prefixes=("trtllm_",),
        model_labels=("model_name",),
        requests=("trtllm_request_success_total",),
        running=("trtllm_num_requests_running",),
        waiting=("trtllm_num_requests_waiting",),
        kv=("trtllm_kv_cache_utilization",),
        hists=(
            ("ttft", ("trtllm_time_to_first_token_seconds",)),
            ("itl", ("trtllm_time_per_output_token_seconds", "trtllm_inter_token_latency_seconds")),
            ("e2e", ("trtllm_e2e_request_latency_seconds",)),
        ),
    ),
    "triton": EngineSpec(
        name="triton",
        prefixes=("nv_inference_", "nv_trt_llm_"),
        model_labels=("model",),
        prompt_tokens=("nv_llm_input_token_len",),
        generation_tokens=("nv_llm_output_token_len",),
        requests=("nv_inference_request_success",),
        running=("nv_trt_llm_request_metrics",),
        running_where=(("request_type", "scheduled"),),
        waiting=("nv_trt_llm_request_metrics",),
        waiting_where=(("request_type", "waiting"),),
        kv=("nv_trt_llm_kv_cache_block_metrics",),
        kv_where=(("kv_cache_block_type", "fraction"),),
        hists=(("ttft", ("nv_inference_first_response_histogram_ms",)),),
        hist_scale=0.001,
    ),
    "dynamo": EngineSpec(
        name="dynamo",
        prefixes=("dynamo_frontend_",),
        model_labels=("model",),
        prompt_tokens=("dynamo_frontend_input_sequence_tokens",),
        generation_tokens=("dynamo_frontend_output_tokens_total",),
        requests=("dynamo_frontend_requests_total",),
        requests_where=(("status", "success"),),
        waiting=("dynamo_frontend_queued_requests",),
        hists=(
            ("ttft", ("dynamo_frontend_time_to_first_token_seconds",)),
            ("itl", ("dynamo_frontend_inter_token_latency_seconds",)),
            ("e2e", ("dynamo_frontend_request_duration_seconds",)),
        ),
    ),
}
"""Every engine the serving mapping knows, by serving.engine name."""

_DETECT_ORDER = ("dynamo", "vllm", "sglang", "trtllm", "triton")
"""A Dynamo frontend page may carry engine families too; a worker page has engine families only."""
_WIRE_PREFIXES = {
    "dynamo": ("dynamo_frontend_",),
    "vllm": ("vllm:", "vllm_"),
    "sglang": ("sglang:", "sglang_"),
    "trtllm": ("trtllm_", "trtllm:"),
    "triton": ("nv_inference_", "nv_trt_llm_"),
}


def detect_engine(page: str | Mapping[str, Family]) -> str | None:
    """The engine that wrote a page, from its metric prefixes (None if it is no serving page)."""
    if isinstance(page, str):
        for engine in _DETECT_ORDER:
            for prefix in _WIRE_PREFIXES[engine]:
                if page.startswith(prefix) or f"\n{prefix}" in page or f"# TYPE {prefix}" in page:
                    return engine
        return None
    names = [canonical(name) for name in page]
    for engine in _DETECT_ORDER:
        if any(name.startswith(ENGINES[engine].prefixes) for name in names):
            return engine
    return None


@functools.cache
def serving_want(engine: str) -> Callable[[str], bool]:
    """A promtext `want` filter that keeps only the families the engine's mapping reads."""
    wanted = ENGINES[engine].wanted()
    decided: dict[str, bool] = {}

    def want(name: str) -> bool:
        keep = decided.get(name)
        if keep is None:
            if len(decided) > 10_000:
                decided.clear()
            keep = decided[name] = canonical(name) in wanted
        return keep

    return want


def _matches(labels: Mapping[str, str], where: tuple[tuple[str, str], ...]) -> bool:
    return all(labels.get(k) == v for k, v in where)


def _values(family: Family | None, where: tuple[tuple[str, str], ...] = ()) -> list[float]:
    if family is None:
        return []
    return [v for labels, v in family.values() if _matches(labels, where) and v == v]


def _dedupe_ranks(family: Family | None, where: tuple[tuple[str, str], ...]) -> list[float]:
    """SGLang: one value per label set once the tp/pp/moe-ep rank labels are dropped."""
    if family is None:
        return []
    kept: dict[frozenset[tuple[str, str]], float] = {}
    for labels, value in family.values():
        if _matches(labels, where) and value == value:
            kept.setdefault(frozenset((k, v) for k, v in labels.items() if k not in _SGLANG_RANKS), value)
    return list(kept.values())


def _counter(index: Mapping[str, Family], names: tuple[str, ...]) -> int | None:
    family = first_of(index, names)
    if family is None:
        return None
    # Triton and Dynamo count tokens only as a histogram's _sum (token lengths per request).
    sums = family.type == "histogram"
    total = sum(v for _, v in family.values(family.name + "_sum")) if sums else sum(_values(family))
    return checked_int(total, *_INT64)


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
) -> Frame:
    """Map one inference server's page to a `serving` row and its `serving_hist` rows at `ts_ms`.

    Args:
        page: the page text, or families already parsed from it.
        endpoint: the endpoint's instance name (serving.endpoint).
        ts_ms: the tick.
        engine: one of ENGINES; detected from the page's metric names when None.
        parser: the endpoint's own parser (see ExpositionParser), else a shared one.

    Raises:
        MappingError: the engine is unknown or cannot be detected.
        ExpositionError: the page text is malformed.
    """
    rows = ServingRows()
    add_serving(page, endpoint, rows, engine=engine, parser=parser)
    return rows.frame(ts_ms)


def add_serving(
    page: str | Mapping[str, Family],
    endpoint: str,
    rows: ServingRows,
    *,
    engine: str | None = None,
    parser: ExpositionParser | None = None,
) -> str:
    """Like map_serving, but add the rows to `rows` (one frame over many endpoints); returns the engine."""
    if engine is None:
        engine = detect_engine(page)
        if engine is None:
            raise MappingError(f"{endpoint}: no vLLM, SGLang, TensorRT-LLM, Triton or Dynamo metrics")
    spec = ENGINES.get(engine)
    if spec is None:
        raise MappingError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    if isinstance(page, str):
        families = (parser.parse if parser is not None else parse)(page, serving_want(engine))
    else:
        families = page
    index = by_canonical(families)
    rows.serving.add(serving_row(index, spec, endpoint))
    for metric, aliases in spec.hists:
        family = first_of(index, aliases)
        if family is None or family.type != "histogram":
            continue
        buckets, total = histogram_total(family, spec.hist_scale)
        n = len(buckets)
        if not n:
            continue
        rows.hist.extend(
            {
                "endpoint": [endpoint] * n,
                "metric": [metric] * n,
                "le": [le for le, _ in buckets],
                "count": checked_ints([c for _, c in buckets], *_INT64, missing=0),
                "sum_s": [None] * (n - 1) + [total],
            },
            n,
        )
    return engine


def serving_row(index: Mapping[str, Family], spec: EngineSpec, endpoint: str) -> dict[str, object]:
    """The `serving` row (without ts) of one page, from its families indexed by canonical name."""
    gauges = _dedupe_ranks if spec.name == "sglang" else _values
    requests = first_of(index, spec.requests)
    requests_ok = None
    if requests is not None:
        total = sum(
            v
            for labels, v in requests.values()
            if _matches(labels, spec.requests_where) and labels.get("finished_reason") not in _NOT_OK
        )
        requests_ok = checked_int(total, *_INT64)
    running_values = gauges(first_of(index, spec.running), spec.running_where)
    waiting_values = gauges(first_of(index, spec.waiting), spec.waiting_where)
    if spec.name == "dynamo":
        inflight = _values(index.get("dynamo_frontend_inflight_requests"))
        if inflight:
            running_values = [sum(inflight) - sum(waiting_values)]
    if spec.name == "triton" and not waiting_values:
        waiting_values = _values(index.get("nv_inference_pending_request_count"))
    kv_values = gauges(first_of(index, spec.kv), spec.kv_where)
    return {
        "endpoint": endpoint,
        "engine": spec.name,
        "model": _models(index, spec),
        "state": int(EndpointState.OK),
        "prompt_tokens": _counter(index, spec.prompt_tokens),
        "generation_tokens": _counter(index, spec.generation_tokens),
        "requests_ok": requests_ok,
        "preemptions": _counter(index, spec.preemptions),
        "running": checked_int(sum(running_values), *_INT32) if running_values else None,
        "waiting": checked_int(sum(waiting_values), *_INT32) if waiting_values else None,
        "kv_cache_q4": (
            checked_int(sum(kv_values) / len(kv_values) * Q4_SCALE, 0, Q4_SCALE) if kv_values else None
        ),
    }


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
