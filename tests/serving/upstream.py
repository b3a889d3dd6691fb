"""Each engine's /metrics families declared with prometheus_client exactly as its upstream source does.

Golden pages for tests/serving: names, HELP, label names and bucket bounds are copied from the
source files collectors.mappings.engines cites (vLLM vllm/v1/metrics/loggers.py, SGLang
python/sglang/srt/metrics/collector.py, TensorRT-LLM tensorrt_llm/metrics/collector.py, Dynamo
lib/llm/src/http/service/metrics.rs); tests set and observe known values through the same client
library the servers use and render pages with prometheus_client's own exposition code, text 0.0.4 or
OpenMetrics. Nothing here is hand-typed exposition text. (SGLang runs prometheus_client in
multiprocess mode, which prints `_sum` first and no `_created`; the single-process output used here
differs only in that order, which the parser does not depend on.)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

REQUEST_LATENCY = [
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
]  # fmt: skip
"""vLLM's request_latency_buckets (e2e, queue, inference, prefill, decode); TensorRT-LLM's e2e/queue."""
TTFT = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0, 160.0, 640.0, 2560.0,
]  # fmt: skip
ITL = [
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
]
TRTLLM_PREFILL = [
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
]
SGLANG_QUEUE = [
    0.0, 0.1, 0.2, 0.5, 1, 2, 3, 4, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300, 400, 500,
    600, 700, 800, 900, 1000, 1200, 1400, 1600, 1800, 2000, 2500, 3000,
]  # fmt: skip
SGLANG_TTFT = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]


class Server:
    """One server's registry; `page()` is what its /metrics answers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

    def page(self) -> str:
        """The page in text format 0.0.4 (what we ask for)."""
        return generate_latest(self.registry).decode()

    def openmetrics(self) -> str:
        """The page in OpenMetrics (prometheus_client's answer to `Accept: application/openmetrics-text`)."""
        return generate_openmetrics(self.registry).decode()

    def counter(self, name: str, doc: str, labels: list[str]) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: list[str]) -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry)

    def histogram(self, name: str, doc: str, labels: list[str], buckets: list[float]) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)


class Vllm(Server):
    """PrometheusStatLogger's families (loggers.py); `cached=False`: a build before PR #33290."""

    def __init__(self, model: str = "meta-llama/Llama-3.1-70B-Instruct", *, cached: bool = True) -> None:
        super().__init__()
        lab = ["model_name", "engine"]
        self.running = self.gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", lab
        )
        self.waiting = self.gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", lab
        )
        self.kv = self.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", lab)
        self.queries = self.counter(
            "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", lab
        )
        self.hits = self.counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", lab
        )
        self.preemptions = self.counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine.", lab
        )
        self.prompt = self.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", lab)
        self.cached = (
            self.counter(
                "vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).", lab
            )
            if cached
            else None
        )
        self.generation = self.counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", lab
        )
        self.success = self.counter(
            "vllm:request_success", "Count of successfully processed requests.", [*lab, "finished_reason"]
        )
        self.ttft = self.histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", lab, TTFT
        )
        self.itl = self.histogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", lab, ITL
        )
        self.e2e = self.histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            lab,
            REQUEST_LATENCY,
        )
        self.queue = self.histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            lab,
            REQUEST_LATENCY,
        )
        self.inference = self.histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            lab,
            REQUEST_LATENCY,
        )
        self.prefill = self.histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            lab,
            REQUEST_LATENCY,
        )
        self.decode = self.histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            lab,
            REQUEST_LATENCY,
        )
        self.model = model
        self.engines: list[str] = []

    def engine(self, index: int) -> None:
        """Make engine `index`'s series, as create_metric_per_engine does at start-up."""
        labels = (self.model, str(index))
        self.engines.append(str(index))
        for metric in (
            self.running,
            self.waiting,
            self.kv,
            self.queries,
            self.hits,
            self.preemptions,
            self.prompt,
            self.generation,
            self.ttft,
            self.itl,
            self.e2e,
            self.queue,
            self.inference,
            self.prefill,
            self.decode,
            *([self.cached] if self.cached is not None else []),
        ):
            metric.labels(*labels)
        for reason in ("stop", "length", "abort", "error"):
            self.success.labels(*labels, reason)

    def of(self, metric: Counter | Gauge | Histogram, engine: int = 0) -> object:
        return metric.labels(self.model, str(engine))


class Sglang(Server):
    """SchedulerMetricsCollector (per rank) and TokenizerMetricsCollector families (collector.py)."""

    QUEUES = (
        "num_queue_reqs",
        "num_grammar_queue_reqs",
        "num_prefill_prealloc_queue_reqs",
        "num_prefill_inflight_queue_reqs",
        "num_decode_prealloc_queue_reqs",
        "num_decode_transfer_queue_reqs",
    )

    def __init__(self, model: str = "Qwen/Qwen3-0.6B") -> None:
        super().__init__()
        self.model = model
        sched = ["model_name", "engine_type", "tp_rank", "pp_rank", "moe_ep_rank"]
        self.gauges = {
            name: self.gauge(f"sglang:{name}", doc, sched)
            for name, doc in (
                ("num_running_reqs", "The number of running requests."),
                ("num_used_tokens", "The number of used tokens."),
                ("token_usage", "The token usage."),
                ("gen_throughput", "The generation throughput (token/s)."),
                ("num_queue_reqs", "The number of requests in the waiting queue."),
                ("num_grammar_queue_reqs", "The number of requests in the grammar waiting queue."),
                ("cache_hit_rate", "The prefix cache hit rate."),
                ("num_prefill_prealloc_queue_reqs", "The number of requests in the prefill prealloc queue."),
                ("num_prefill_inflight_queue_reqs", "The number of requests in the prefill inflight queue."),
                ("num_decode_prealloc_queue_reqs", "The number of requests in the decode prealloc queue."),
                ("num_decode_transfer_queue_reqs", "The number of requests in the decode transfer queue."),
            )
        }
        self.queue_time = self.histogram(
            "sglang:queue_time_seconds", "Histogram of queueing time in seconds.", sched, SGLANG_QUEUE
        )
        tok = ["model_name"]
        self.prompt = self.counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.", tok)
        self.generation = self.counter(
            "sglang:generation_tokens_total", "Number of generation tokens processed.", tok
        )
        self.cached = self.counter("sglang:cached_tokens_total", "Number of cached prompt tokens.", tok)
        self.requests = self.counter("sglang:num_requests_total", "Number of requests processed.", tok)
        self.aborted = self.counter("sglang:num_aborted_requests_total", "Number of requests aborted.", tok)
        self.ttft = self.histogram(
            "sglang:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            tok,
            SGLANG_TTFT,
        )

    def rank(self, tp_rank: int, engine_type: str = "unified") -> dict[str, str]:
        return {
            "model_name": self.model,
            "engine_type": engine_type,
            "tp_rank": str(tp_rank),
            "pp_rank": "0",
            "moe_ep_rank": "0",
        }

    def log_stats(self, ranks: int, **values: float) -> None:
        """SchedulerMetricsCollector.log_stats on every TP rank: each rank sets the same figures."""
        for r in range(ranks):
            for name, gauge in self.gauges.items():
                gauge.labels(**self.rank(r)).set(values.get(name, 0.0))

    def finished(self, prompt: int, generation: int, cached: int) -> None:
        """TokenizerMetricsCollector.observe_one_finished_request."""
        labels = {"model_name": self.model}
        self.prompt.labels(**labels).inc(prompt)
        self.generation.labels(**labels).inc(generation)
        if cached > 0:
            self.cached.labels(**labels).inc(cached)
        self.requests.labels(**labels).inc(1)
