"""vLLM (V1 engine): names of vllm-project/vllm `vllm/v1/metrics/loggers.py`, class PrometheusStatLogger.

Followed: loggers.py at commit 005a810b (v0.10 era: the request_queue/prefill/decode/inference
histograms, prefix_cache_queries/hits counters, `engine` label per data-parallel engine) and
`vllm:prompt_tokens_cached` from PR #33290 (merged 2026-02-03, "Number of cached prompt tokens
(local + external)"). prometheus_client appends `_total` to counters on the wire; `:` and `_` are the
same name here (collectors.mappings.common.canonical).

Read and where it goes:
- prompt/generation tokens, request_success (all finish reasons but abort and error), preemptions.
- cached_tokens <- vllm:prompt_tokens_cached_total; older builds: vllm:prefix_cache_hits_total
  (hit tokens of the local prefix cache; the queried tokens, vllm:prefix_cache_queries_total, are
  the prompt tokens scheduled, so Δcached/Δprompt is the hit rate either way and the queries
  counter is not stored: vLLM PR #56923 measured prompt_tokens == computed + cache hits).
- queue <- vllm:request_queue_time_seconds (WAITING phase), prefill <- request_prefill_time_seconds:
  together they split TTFT into waiting for capacity and computing the prompt. request_decode_time
  and request_inference_time (= prefill + decode) are not stored: decode time grows with the
  request's output length, which ITL and e2e already show per token and per request.
"""

from __future__ import annotations

from collectors.mappings.engines.spec import EngineSpec

SPEC = EngineSpec(
    name="vllm",
    prefixes=("vllm_",),
    model_labels=("model_name",),
    prompt_tokens=("vllm_prompt_tokens_total",),
    generation_tokens=("vllm_generation_tokens_total",),
    cached_tokens=(
        "vllm_prompt_tokens_cached_total",
        "vllm_prefix_cache_hits_total",
        "vllm_gpu_prefix_cache_hits_total",
    ),
    requests=("vllm_request_success_total",),
    preemptions=("vllm_num_preemptions_total",),
    running=("vllm_num_requests_running",),
    waiting=("vllm_num_requests_waiting",),
    kv=("vllm_kv_cache_usage_perc", "vllm_gpu_cache_usage_perc"),
    hists=(
        ("ttft", ("vllm_time_to_first_token_seconds",)),
        ("itl", ("vllm_inter_token_latency_seconds", "vllm_time_per_output_token_seconds")),
        ("e2e", ("vllm_e2e_request_latency_seconds",)),
        ("queue", ("vllm_request_queue_time_seconds",)),
        ("prefill", ("vllm_request_prefill_time_seconds",)),
    ),
    # create_metric_per_engine makes every engine's series at start-up, so these always answer
    required=("generation_tokens", "running", "waiting", "kv_cache_q4"),
)
