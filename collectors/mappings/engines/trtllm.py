"""TensorRT-LLM `trtllm-serve` (/prometheus/metrics): names of NVIDIA/TensorRT-LLM
`tensorrt_llm/metrics/collector.py` (MetricsCollector) at commit 050f80de (2026).

Labels are the server's (`model_name`, `engine_type`); Dynamo's pass-through once wrote `trtllm:`.
Read and where it goes:
- prompt/generation tokens <- trtllm_prompt_tokens_total / trtllm_generation_tokens_total (per
  finished request, with `return_perf_metrics`), so tokens/s is no longer empty for TensorRT-LLM.
- cached_tokens <- trtllm_prompt_cached_tokens_total ("prompt tokens served from KV cache").
- running/waiting/KV <- num_requests_running/waiting, kv_cache_utilization (iteration stats, set
  only once the engine has iterated: not required on an idle server's page).
- queue <- trtllm_request_queue_time_seconds, prefill <- trtllm_request_prefill_time_seconds
  (decode and inference time: not stored, as for vLLM).
Not stored: trtllm_kv_cache_hit_rate (gauge): KV-block reuse of the cache manager, a second hit rate
beside Δcached/Δprompt tokens from the counter above.
"""

from __future__ import annotations

from collectors.mappings.engines.spec import EngineSpec

SPEC = EngineSpec(
    name="trtllm",
    prefixes=("trtllm_",),
    model_labels=("model_name",),
    prompt_tokens=("trtllm_prompt_tokens_total",),
    generation_tokens=("trtllm_generation_tokens_total",),
    cached_tokens=("trtllm_prompt_cached_tokens_total",),
    requests=("trtllm_request_success_total",),
    running=("trtllm_num_requests_running",),
    waiting=("trtllm_num_requests_waiting",),
    kv=("trtllm_kv_cache_utilization",),
    hists=(
        ("ttft", ("trtllm_time_to_first_token_seconds",)),
        ("itl", ("trtllm_time_per_output_token_seconds", "trtllm_inter_token_latency_seconds")),
        ("e2e", ("trtllm_e2e_request_latency_seconds",)),
        ("queue", ("trtllm_request_queue_time_seconds",)),
        ("prefill", ("trtllm_request_prefill_time_seconds",)),
    ),
)
