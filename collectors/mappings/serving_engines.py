"""The inference engines the serving mapping knows: where each keeps its figures, and page detection.

Names come from shared/reference/serving.md (sections 1-5); collectors.mappings.serving maps a page
with these specs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from collectors.mappings.common import canonical
from collectors.promtext import Family


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
