"""Triton Inference Server with the TensorRT-LLM backend: triton-inference-server/server
`docs/user_guide/metrics.md` and triton-inference-server/tensorrtllm_backend's README (metrics).

Counters without `_total` (Triton's C++ exposition), per-model `model` label, the TTFT histogram in
milliseconds (stored in seconds), the backend's request and KV-block gauges by sub-label. Unchanged
by this issue: Triton has no cached-token counter and no queue/prefill histograms (its queue time is
the cumulative counter nv_inference_queue_duration_us).
"""

from __future__ import annotations

from collectors.mappings.engines.spec import EngineSpec

SPEC = EngineSpec(
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
    # waiting without the TensorRT-LLM backend: the per-model pending requests
    extra=("nv_inference_pending_request_count",),
)
