"""SGLang: names of sgl-project/sglang `python/sglang/srt/metrics/collector.py` at commit 93d04878.

SchedulerMetricsCollector (gauges, queue_time histogram; labels model_name, engine_type, tp_rank,
pp_rank, moe_ep_rank, dp_rank with DP attention) runs in every scheduler rank, so its series repeat
per tensor/pipeline/expert rank; TokenizerMetricsCollector (token and request counters, TTFT/ITL/E2E)
runs once. Always prometheus_client multiprocess mode.

Read and where it goes:
- waiting <- num_queue_reqs plus the queues a request waits in before its forward pass:
  num_grammar_queue_reqs (grammar compilation) and, in prefill/decode disaggregation,
  num_prefill_prealloc_queue_reqs, num_prefill_inflight_queue_reqs, num_decode_prealloc_queue_reqs,
  num_decode_transfer_queue_reqs. Each family is deduplicated over ranks, then they add up.
- cached_tokens <- cached_tokens_total (newer builds split it by a `cache_source` label: summed).
- queue <- queue_time_seconds, rank 0's series only (every rank observes the same requests).
Not stored, on purpose:
- cache_hit_rate (gauge): the hit rate is Δcached_tokens / Δprompt_tokens over the window, from the
  counters of the same collector; the gauge is the scheduler's last-batch figure and would be a
  second, disagreeing hit rate.
- gen_throughput (gauge): tokens/s is the rate of generation_tokens_total (one primitive for
  rates); the gauge is the scheduler's last log interval and is forced to 0 when idle.
- num_used_tokens (gauge): token_usage is num_used_tokens over the pool size, already the KV column.
- num_aborted_requests_total: TokenizerManager.abort_request counts one per call, and abort_all
  aborts many requests in one call, so it is no per-request tally to subtract from num_requests_total
  (aborted requests that reach the detokenizer are counted there as finished).
"""

from __future__ import annotations

from collectors.mappings.engines.spec import EngineSpec

SPEC = EngineSpec(
    name="sglang",
    prefixes=("sglang_",),
    model_labels=("model_name",),
    prompt_tokens=("sglang_prompt_tokens_total",),
    generation_tokens=("sglang_generation_tokens_total",),
    cached_tokens=("sglang_cached_tokens_total",),
    requests=("sglang_num_requests_total",),
    running=("sglang_num_running_reqs",),
    waiting=("sglang_num_queue_reqs",),
    waiting_extra=(
        "sglang_num_grammar_queue_reqs",
        "sglang_num_prefill_prealloc_queue_reqs",
        "sglang_num_prefill_inflight_queue_reqs",
        "sglang_num_decode_prealloc_queue_reqs",
        "sglang_num_decode_transfer_queue_reqs",
    ),
    kv=("sglang_token_usage",),
    hists=(
        ("ttft", ("sglang_time_to_first_token_seconds",)),
        ("itl", ("sglang_inter_token_latency_seconds", "sglang_time_per_output_token_seconds")),
        ("e2e", ("sglang_e2e_request_latency_seconds",)),
        ("queue", ("sglang_queue_time_seconds",)),
    ),
    rank_labels=("tp_rank", "pp_rank", "moe_ep_rank"),
    # the scheduler logs its gauges every interval, idle or not
    required=("running", "waiting", "kv_cache_q4"),
)
