"""/metrics pages of the simulated inference servers, in each engine's own wire format.

Formats follow shared/reference/serving.md: vLLM (prometheus_client, sorted labels, Go-style floats,
`_created` gauge families, plus the http/python/process families a real page carries), SGLang
(multiprocess mode: `_sum` before the buckets, no `_created`, scheduler gauges and its queue-time
histogram repeated per TP rank, the disaggregation queues at 0 as a unified server prints them) and
trtllm-serve (`trtllm_` names at /prometheus/metrics). Names are those collectors.mappings.engines
cites from each engine's source, including the cached-prompt-token counters and the queue/prefill
histograms. Values come from a collectors.sim.workload.Instance; callers hold the rack's lock while
rendering.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from collectors.sim.histogram import Histogram
from collectors.sim.workload import Instance

PATHS = {"vllm": "/metrics", "sglang": "/metrics", "trtllm": "/prometheus/metrics"}
"""Where each engine serves its Prometheus page."""
ENGINES = tuple(PATHS)
"""Engines the simulator can serve."""


def go_float(value: float) -> str:
    """A float as prometheus_client writes it (Go's strconv style: 212.0, 1.8996224e+07, +Inf)."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


class _Page:
    """Lines of one page under construction."""

    def __init__(self) -> None:
        self.out: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: list[tuple[str, str, float]]) -> None:
        self.out.append(f"# HELP {name} {help_text}")
        self.out.append(f"# TYPE {name} {kind}")
        for sample, labels, value in samples:
            self.out.append(
                f"{sample}{{{labels}}} {go_float(value)}" if labels else f"{sample} {go_float(value)}"
            )

    def histogram(
        self,
        name: str,
        help_text: str,
        hist: Histogram,
        labels: str,
        *,
        after: str = "",
        sum_first: bool = False,
    ) -> None:
        """A histogram family; `labels` sort before `le` on a bucket line, `after` sorts after it."""
        self.family(name, "histogram", help_text, _histogram_samples(name, hist, labels, after, sum_first))

    def text(self) -> str:
        return "\n".join(self.out) + "\n"


def _histogram_samples(
    name: str, hist: Histogram, labels: str, after: str, sum_first: bool
) -> list[tuple[str, str, float]]:
    """One series' `_bucket`, `_count` and `_sum` samples (`_sum` first in multiprocess mode)."""
    prefix = f"{labels}," if labels else ""
    suffix = f",{after}" if after else ""
    buckets = [
        (
            f"{name}_bucket",
            f'{prefix}le="{"+Inf" if math.isinf(le) else go_float(le)}"{suffix}',
            float(count),
        )
        for le, count in hist.buckets()
    ]
    plain = ",".join(part for part in (labels, after) if part)
    total = (f"{name}_sum", plain, hist.sum)
    count = (f"{name}_count", plain, float(hist.count))
    return [total, *buckets, count] if sum_first else [*buckets, count, total]


_CREATED = 1.7957213885347493e09


def _hit_rate(inst: Instance) -> float:
    """The share of prompt tokens served from the prefix cache so far (0 before any)."""
    return inst.cached_tokens / inst.prompt_tokens if inst.prompt_tokens else 0.0


def _process_families(page: _Page, inst: Instance) -> None:
    """The python/process/http families every prometheus_client FastAPI server adds (skipped by scrapers)."""
    for name, help_text in (
        ("python_gc_objects_collected_total", "Objects collected during gc"),
        ("python_gc_objects_uncollectable_total", "Uncollectable objects found during GC"),
        ("python_gc_collections_total", "Number of times this generation was collected"),
    ):
        page.family(
            name, "counter", help_text, [(name, f'generation="{g}"', 100.0 * (g + 1)) for g in range(3)]
        )
    page.family("python_info", "gauge", "Python platform information", [
        ("python_info", 'implementation="CPython",major="3",minor="12",patchlevel="9",version="3.12.9"', 1.0)
    ])  # fmt: skip
    for name, help_text, value in (
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", 9.8e10),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", 5.2e9),
        ("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", _CREATED),
        ("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", 1.0e4 + inst.index),
        ("process_open_fds", "Number of open file descriptors.", 210.0),
        ("process_max_fds", "Maximum number of open file descriptors.", 1048576.0),
    ):
        kind = "counter" if name.endswith("_total") else "gauge"
        page.family(name, kind, help_text, [(name, "", value)])
    requests = float(inst.requests_ok)
    page.family("http_requests_total", "counter", "Total number of requests by method, status and handler.", [
        ("http_requests_total", 'handler="/v1/completions",method="POST",status="2xx"', requests),
        ("http_requests_total", 'handler="/metrics",method="GET",status="2xx"', 1000.0),
    ])  # fmt: skip


def vllm_page(inst: Instance) -> str:
    """vLLM V1 (>= 0.11) page of one instance, one data-parallel engine."""
    page = _Page()
    _process_families(page, inst)
    lab = f'engine="0",model_name="{inst.model}"'
    page.family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", [
        ("vllm:num_requests_running", lab, float(inst.running))
    ])  # fmt: skip
    page.family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", [
        ("vllm:num_requests_waiting", lab, float(inst.waiting))
    ])  # fmt: skip
    page.family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", [
        ("vllm:kv_cache_usage_perc", lab, round(inst.kv_cache_usage, 6))
    ])  # fmt: skip
    page.family("vllm:engine_sleep_state", "gauge", "Engine sleep state; awake = 0 means asleep.", [
        ("vllm:engine_sleep_state", f'{lab},sleep_state="awake"', 1.0),
        ("vllm:engine_sleep_state", f'{lab},sleep_state="weights_offloaded"', 0.0),
        ("vllm:engine_sleep_state", f'{lab},sleep_state="discard_all"', 0.0),
    ])  # fmt: skip
    counters: list[tuple[str, str, list[tuple[str, float]]]] = [
        (
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            [("", inst.preemptions)],
        ),
        ("vllm:prompt_tokens", "Number of prefill tokens processed.", [("", inst.prompt_tokens)]),
        (
            "vllm:prompt_tokens_cached",
            "Number of cached prompt tokens (local + external).",
            [("", inst.cached_tokens)],
        ),
        (
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            [("", inst.prompt_tokens)],
        ),
        (
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            [("", inst.cached_tokens)],
        ),
        ("vllm:generation_tokens", "Number of generation tokens processed.", [("", inst.generation_tokens)]),
        (
            "vllm:request_success",
            "Count of successfully processed requests.",
            [
                (f',finished_reason="{r}"', inst.requests_finished.get(r, 0))
                for r in ("abort", "error", "length", "stop")
            ],
        ),
    ]
    for name, help_text, series in counters:
        # prometheus_client sorts labels: finished_reason sits between engine and model_name.
        def labels(extra: str) -> str:
            return f'engine="0"{extra},model_name="{inst.model}"'

        page.family(
            f"{name}_total", "counter", help_text, [(f"{name}_total", labels(x), float(v)) for x, v in series]
        )
        page.family(
            f"{name}_created",
            "gauge",
            help_text,
            [(f"{name}_created", labels(x), _CREATED) for x, _ in series],
        )
    for name, help_text, hist in (
        ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", inst.ttft),
        ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", inst.itl),
        ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", inst.e2e),
        (
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            inst.queue,
        ),
        (
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            inst.prefill,
        ),
    ):
        page.histogram(name, help_text, hist, 'engine="0"', after=f'model_name="{inst.model}"')
        page.family(f"{name}_created", "gauge", help_text, [(f"{name}_created", lab, _CREATED)])
    return page.text()


def sglang_page(inst: Instance) -> str:
    """SGLang page of one instance (multiprocess mode), scheduler gauges once per TP rank."""
    page = _Page()
    ranks = range(inst.tp)

    def sched(rank: int) -> str:
        return f'engine_type="unified",model_name="{inst.model}",moe_ep_rank="0",pp_rank="0",tp_rank="{rank}"'

    for name, help_text, value in (
        ("sglang:num_running_reqs", "The number of running requests.", float(inst.running)),
        ("sglang:num_queue_reqs", "The number of requests in the waiting queue.", float(inst.waiting)),
        ("sglang:token_usage", "The token usage.", round(inst.kv_cache_usage, 2)),
        ("sglang:gen_throughput", "The generation throughput (token/s).", round(inst.tokens_per_s, 1)),
        ("sglang:cache_hit_rate", "The prefix cache hit rate.", round(_hit_rate(inst), 2)),
        ("sglang:num_grammar_queue_reqs", "The number of requests in the grammar waiting queue.", 0.0),
        (
            "sglang:num_prefill_prealloc_queue_reqs",
            "The number of requests in the prefill prealloc queue.",
            0.0,
        ),
        (
            "sglang:num_prefill_inflight_queue_reqs",
            "The number of requests in the prefill inflight queue.",
            0.0,
        ),
        (
            "sglang:num_decode_prealloc_queue_reqs",
            "The number of requests in the decode prealloc queue.",
            0.0,
        ),
        (
            "sglang:num_decode_transfer_queue_reqs",
            "The number of requests in the decode transfer queue.",
            0.0,
        ),
    ):
        page.family(name, "gauge", help_text, [(name, sched(r), value) for r in ranks])
    # every scheduler rank observes the same queueing: one series per rank
    samples = [
        s
        for r in ranks
        for s in _histogram_samples("sglang:queue_time_seconds", inst.queue, "", sched(r), True)
    ]
    page.family("sglang:queue_time_seconds", "histogram", "Histogram of queueing time in seconds.", samples)
    model = f'model_name="{inst.model}"'
    for name, help_text, value in (
        ("sglang:prompt_tokens_total", "Number of prefill tokens processed.", inst.prompt_tokens),
        ("sglang:generation_tokens_total", "Number of generation tokens processed.", inst.generation_tokens),
        ("sglang:cached_tokens_total", "Number of cached prompt tokens.", inst.cached_tokens),
        ("sglang:num_requests_total", "Number of requests processed.", inst.requests_ok),
        ("sglang:num_aborted_requests_total", "Number of requests aborted.", 0),
    ):
        page.family(name, "counter", help_text, [(name, model, float(value))])
    for name, help_text, hist in (
        ("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", inst.ttft),
        ("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", inst.itl),
        (
            "sglang:e2e_request_latency_seconds",
            "Histogram of End-to-end request latency in seconds",
            inst.e2e,
        ),
    ):
        # multiprocess mode prints `le` first, then the other labels, and `_sum` before the buckets
        page.histogram(name, help_text, hist, "", after=model, sum_first=True)
    return page.text()


def trtllm_page(inst: Instance) -> str:
    """trtllm-serve /prometheus/metrics page of one instance (tensorrt_llm/metrics/collector.py's names)."""
    page = _Page()
    lab = f'engine_type="trtllm",model_name="{inst.model}"'
    success = [
        (
            "trtllm_request_success_total",
            f'engine_type="trtllm",finished_reason="{r}",model_name="{inst.model}"',
            float(inst.requests_finished.get(r, 0)),
        )
        for r in ("length", "stop")
    ]
    page.family(
        "trtllm_request_success_total", "counter", "Count of successfully processed requests.", success
    )
    page.family("trtllm_request_success_created", "gauge", "Count of successfully processed requests.", [
        ("trtllm_request_success_created", labels, _CREATED) for _, labels, _ in success
    ])  # fmt: skip
    for name, help_text, value in (
        ("trtllm_num_requests_running", "Number of requests currently running.", float(inst.running)),
        ("trtllm_num_requests_waiting", "Number of requests waiting.", float(inst.waiting)),
        ("trtllm_kv_cache_utilization", "KV cache utilization (0-1).", round(inst.kv_cache_usage, 4)),
        ("trtllm_kv_cache_hit_rate", "KV cache hit rate", round(_hit_rate(inst), 4)),
    ):
        page.family(name, "gauge", help_text, [(name, lab, value)])
    for name, help_text, value in (
        (
            "trtllm_prompt_tokens_total",
            "Cumulative number of prompt (input) tokens processed.",
            inst.prompt_tokens,
        ),
        (
            "trtllm_generation_tokens_total",
            "Cumulative number of generation (output) tokens produced.",
            inst.generation_tokens,
        ),
        (
            "trtllm_prompt_cached_tokens_total",
            "Process-lifetime total prompt tokens served from KV cache.",
            inst.cached_tokens,
        ),
    ):
        page.family(name, "counter", help_text, [(name, lab, float(value))])
    for name, help_text, hist in (
        ("trtllm_time_to_first_token_seconds", "Histogram of time to first token in seconds.", inst.ttft),
        ("trtllm_time_per_output_token_seconds", "Histogram of time per output token in seconds.", inst.itl),
        (
            "trtllm_e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.",
            inst.e2e,
        ),
        (
            "trtllm_request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            inst.queue,
        ),
        (
            "trtllm_request_prefill_time_seconds",
            "Histogram of prefill (context) phase duration in seconds.",
            inst.prefill,
        ),
    ):
        page.histogram(name, help_text, hist, 'engine_type="trtllm"', after=f'model_name="{inst.model}"')
    return page.text()


RENDERERS: dict[str, Callable[[Instance], str]] = {
    "vllm": vllm_page,
    "sglang": sglang_page,
    "trtllm": trtllm_page,
}
"""Engine -> page renderer."""
