"""TensorRT-LLM's and Dynamo's /metrics families declared with prometheus_client as upstream does
(see tests/serving/upstream.py; Dynamo's frontend is Rust, whose text differs only in number
formatting: integers without `.0`)."""

from __future__ import annotations

import math

from tests.serving.upstream import ITL, REQUEST_LATENCY, TTFT, Server

TRTLLM_PREFILL = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0,
    2560.0,
]  # fmt: skip


class Trtllm(Server):
    """MetricsCollector's families (tensorrt_llm/metrics/collector.py), labels model_name, engine_type."""

    def __init__(self, model: str = "nemotron-nano-3") -> None:
        super().__init__()
        self.labels = {"model_name": model, "engine_type": "trtllm"}
        lab = list(self.labels)
        self.success = self.counter(
            "trtllm_request_success_total",
            "Count of successfully processed requests.",
            [*lab, "finished_reason"],
        )
        self.e2e = self.histogram(
            "trtllm_e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.",
            lab,
            REQUEST_LATENCY,
        )
        self.ttft = self.histogram(
            "trtllm_time_to_first_token_seconds", "Histogram of time to first token in seconds.", lab, TTFT
        )
        self.tpot = self.histogram(
            "trtllm_time_per_output_token_seconds", "Histogram of time per output token in seconds.", lab, ITL
        )
        self.queue = self.histogram(
            "trtllm_request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            lab,
            REQUEST_LATENCY,
        )
        self.prefill = self.histogram(
            "trtllm_request_prefill_time_seconds",
            "Histogram of prefill (context) phase duration in seconds "
            "(first_token_time - first_scheduled_time).",
            lab,
            TRTLLM_PREFILL,
        )
        self.prompt = self.counter(
            "trtllm_prompt_tokens_total", "Cumulative number of prompt (input) tokens processed.", lab
        )
        self.generation = self.counter(
            "trtllm_generation_tokens_total", "Cumulative number of generation (output) tokens produced.", lab
        )
        self.hit_rate = self.gauge("trtllm_kv_cache_hit_rate", "KV cache hit rate", lab)
        self.utilization = self.gauge("trtllm_kv_cache_utilization", "KV cache utilization", lab)
        self.running = self.gauge("trtllm_num_requests_running", "Number of active requests", lab)
        self.waiting = self.gauge("trtllm_num_requests_waiting", "Number of queued requests", lab)
        self.cached = self.counter(
            "trtllm_prompt_cached_tokens_total",
            "Process-lifetime total prompt tokens served from KV cache. Resets only when the serving process "
            "restarts, not when the KV cache is flushed or evicted.",
            lab,
        )
        self.cached.labels(**self.labels)

    def finished(
        self, reason: str, *, prompt: int, generation: int, cached: int, queue: float, prefill: float
    ) -> None:
        """log_request_metrics_dict for one finished request."""
        self.success.labels(**self.labels, finished_reason=reason).inc()
        self.queue.labels(**self.labels).observe(queue)
        self.prefill.labels(**self.labels).observe(prefill)
        self.prompt.labels(**self.labels).inc(prompt)
        self.generation.labels(**self.labels).inc(generation)
        if cached > 0:
            self.cached.labels(**self.labels).inc(cached)

    def iteration(self, *, running: int, waiting: int, used: int, max_blocks: int, hit_rate: float) -> None:
        """log_iteration_stats: the queue and KV gauges."""
        self.running.labels(**self.labels).set(running)
        self.waiting.labels(**self.labels).set(waiting)
        self.utilization.labels(**self.labels).set(used / max_blocks)
        self.hit_rate.labels(**self.labels).set(hit_rate)


def dynamo_log_buckets(low: float, high: float, count: int) -> list[float]:
    """generate_log_buckets of metrics.rs: 0, then log-spaced values to 2 significant figures."""
    out = [0.0]
    for i in range(1, count):
        value = math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (count - 1))
        magnitude = math.floor(math.log10(value))
        scale = 10 ** (1 - magnitude)
        out.append(round(value * scale) / scale)
    return sorted(set(out))


class Dynamo(Server):
    """The frontend's Metrics (lib/llm/src/http/service/metrics.rs) under `prefix` (DYN_METRICS_PREFIX),
    and the KV router's worker gauges, which always say `dynamo_frontend_`.

    `output_tokens=False`: a build without output_tokens_total (only the per-request histograms).
    """

    def __init__(self, prefix: str = "dynamo_frontend", *, output_tokens: bool = True) -> None:
        super().__init__()
        p = prefix
        isl = dynamo_log_buckets(50.0, 128000.0, 12)
        self.requests = self.counter(
            f"{p}_requests_total",
            "Total number of LLM requests processed",
            ["model", "endpoint", "request_type", "status", "error_type"],
        )
        self.inflight = self.gauge(f"{p}_inflight_requests", "Number of inflight requests", ["model"])
        self.gauge(f"{p}_disconnected_clients", "Number of disconnected clients", []).set(0)
        self.queued = self.gauge(
            f"{p}_queued_requests", "Number of requests in HTTP processing queue", ["model"]
        )
        self.input = self.histogram(
            f"{p}_input_sequence_tokens", "Input sequence length in tokens", ["model"], isl
        )
        self.output = self.histogram(
            f"{p}_output_sequence_tokens",
            "Output sequence length in tokens",
            ["model"],
            dynamo_log_buckets(50.0, 32000.0, 10),
        )
        self.cached = self.histogram(
            f"{p}_cached_tokens", "Number of cached tokens (prefix cache hits) per request", ["model"], isl
        )
        self.output_tokens = (
            self.counter(
                f"{p}_output_tokens_total",
                "Total number of output tokens generated (updates in real-time)",
                ["model"],
            )
            if output_tokens
            else None
        )
        self.ttft = self.histogram(
            f"{p}_time_to_first_token_seconds",
            "Time to first token in seconds",
            ["model"],
            dynamo_log_buckets(0.001, 480.0, 18),
        )
        self.total_blocks = self.gauge(
            f"{p}_model_total_kv_blocks",
            "Total KV cache blocks available for a worker serving the model",
            ["model"],
        )
        self.active_blocks = self.gauge(
            "dynamo_frontend_worker_active_decode_blocks",
            "Active KV cache decode blocks per worker",
            ["worker_id", "dp_rank", "worker_type"],
        )

    def finished(self, model: str, *, prompt: int, generation: int, cached: int) -> None:
        """One successful streamed chat request, as the frontend records it."""
        self.requests.labels(model, "chat_completions", "stream", "success", "").inc()
        self.input.labels(model).observe(prompt)
        self.output.labels(model).observe(generation)
        self.cached.labels(model).observe(cached)
        if self.output_tokens is not None:
            self.output_tokens.labels(model).inc(generation)
