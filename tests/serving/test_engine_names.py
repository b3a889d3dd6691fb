"""Every engine's current names, on golden pages rendered by prometheus_client from upstream's
declarations (tests/serving/upstream*.py): known observations in, hand-counted rows out.

Each test renders a first page (the collector's first sight: every counter counts from there), sets
and observes known values the way the server's own code does, renders the second page and maps both
with one SeriesCounters. Expected figures are sums of what was observed and bucket counts written
here (`counts`), independently of the mapping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest

from collectors.mappings import map_serving
from collectors.series_counters import SeriesCounters
from storage.schemas import EndpointState
from tests.serving.upstream import REQUEST_LATENCY, SGLANG_QUEUE, Server, Sglang, Vllm
from tests.serving.upstream_nvidia import TRTLLM_PREFILL, Dynamo, Trtllm

T0 = 1_790_000_000_000
Hist = dict[str, list[tuple[float, int]]]


def counts(observed: Sequence[float], bounds: Sequence[float]) -> list[tuple[float, int]]:
    """Cumulative bucket counts of `observed` (what `sum by (le)` of the increase is), +Inf last."""
    return [(le, sum(v <= le for v in observed)) for le in bounds] + [(math.inf, len(observed))]


def scrape(
    server: Server, change: Callable[[], None], metrics_prefix: str | None = None
) -> tuple[dict, Hist, SeriesCounters]:
    """The serving row and histograms of the page after `change`, the page before being the first seen."""
    series = SeriesCounters()
    map_serving(server.page(), "ep", T0, series=series, metrics_prefix=metrics_prefix)
    change()
    frame = map_serving(server.page(), "ep", T0 + 1000, series=series, metrics_prefix=metrics_prefix)
    (row,) = frame.table("serving").to_pylist()
    hist: Hist = {}
    if "serving_hist" in frame.batches:
        for r in frame.table("serving_hist").to_pylist():
            hist.setdefault(r["metric"], []).append((r["le"], r["count"]))
    return row, hist, series


def vllm_server(*, cached: bool = True) -> Vllm:
    server = Vllm(cached=cached)
    for engine in (0, 1):  # two data-parallel engines: every figure sums over them
        server.engine(engine)
        server.of(server.prompt, engine).inc(5_000_000)  # lifetime before the first scrape
        server.of(server.generation, engine).inc(1_700_000)
    return server


def vllm_traffic(server: Vllm) -> Callable[[], None]:
    def change() -> None:
        for engine, (prompt, cached, hits, gen) in enumerate(((1000, 400, 450, 2500), (500, 100, 100, 700))):
            server.of(server.prompt, engine).inc(prompt)
            server.of(server.queries, engine).inc(prompt)
            server.of(server.hits, engine).inc(
                hits
            )  # the local cache only: not what prompt_tokens_cached says
            if server.cached is not None:
                server.of(server.cached, engine).inc(cached)
            server.of(server.generation, engine).inc(gen)
            server.of(server.running, engine).set(10 * (engine + 1))
            server.of(server.waiting, engine).set(engine + 1)
            server.of(server.kv, engine).set(0.5 + 0.2 * engine)
        for reason, n in (("stop", 3), ("length", 1), ("abort", 2)):
            server.success.labels(server.model, "0", reason).inc(n)
        for value in (0.2, 0.4, 1.2):
            server.of(server.queue).observe(value)
        server.of(server.queue, 1).observe(0.6)
        for value in (0.05, 0.3):
            server.of(server.prefill).observe(value)
        server.of(server.decode).observe(9.0)
        server.of(server.inference).observe(9.3)

    return change


def test_vllm_current_names() -> None:
    server = vllm_server()
    row, hist, series = scrape(server, vllm_traffic(server))
    assert row["state"] == EndpointState.OK and series.warning == ""
    assert (row["prompt_tokens"], row["cached_tokens"], row["generation_tokens"]) == (1500, 500, 3200)
    assert row["cached_tokens"] / row["prompt_tokens"] == pytest.approx(1 / 3)  # the window's hit rate
    assert row["requests_ok"] == 4  # stop and length; abort is not a finished request
    assert (row["running"], row["waiting"], row["kv_cache_q4"]) == (30, 3, 6000)
    assert hist["queue"] == counts([0.2, 0.4, 1.2, 0.6], REQUEST_LATENCY)
    assert hist["prefill"] == counts([0.05, 0.3], REQUEST_LATENCY)
    # decode and inference time: read by nobody (the stored split of TTFT is queue + prefill)
    assert set(hist) == {"ttft", "itl", "e2e", "queue", "prefill"}


def test_vllm_before_prompt_tokens_cached_reads_prefix_cache_hits() -> None:
    server = vllm_server(cached=False)
    row, _, _ = scrape(server, vllm_traffic(server))
    assert row["cached_tokens"] == 450 + 100 and row["state"] == EndpointState.OK


def test_vllm_page_without_its_gauges_is_partial_and_says_which() -> None:
    server = vllm_server()
    server.registry.unregister(server.waiting)
    server.registry.unregister(server.kv)
    row, _, series = scrape(server, vllm_traffic(server))
    assert row["state"] == EndpointState.PARTIAL
    assert series.warning == "no series for waiting, kv_cache_q4"
    assert row["running"] == 30 and row["generation_tokens"] == 3200  # the rest is kept


def test_sglang_queues_cached_tokens_and_rank_repeats() -> None:
    server = Sglang()
    server.finished(prompt=700, generation=90, cached=300)
    server.log_stats(2)
    for rank in (0, 1):  # a series counts from its second sample: make them before the first page
        server.queue_time.labels(**server.rank(rank)).observe(0.1)

    def change() -> None:
        server.finished(prompt=1000, generation=200, cached=600)
        server.finished(prompt=500, generation=100, cached=0)
        server.aborted.labels(model_name=server.model).inc()  # abort_request: not subtracted
        queues = {"num_queue_reqs": 5, "num_grammar_queue_reqs": 1, "num_prefill_prealloc_queue_reqs": 3,
                  "num_prefill_inflight_queue_reqs": 2, "num_decode_prealloc_queue_reqs": 1,
                  "num_decode_transfer_queue_reqs": 4}  # fmt: skip
        server.log_stats(2, num_running_reqs=12, token_usage=0.42, cache_hit_rate=0.4, **queues)
        for rank in (0, 1):  # each TP rank's scheduler observes the same requests
            for value in (0.05, 0.3, 2.5):
                server.queue_time.labels(**server.rank(rank)).observe(value)

    row, hist, series = scrape(server, change)
    assert row["state"] == EndpointState.OK, series.warning
    assert (row["prompt_tokens"], row["generation_tokens"], row["cached_tokens"]) == (1500, 300, 600)
    assert row["requests_ok"] == 2
    assert (row["running"], row["waiting"], row["kv_cache_q4"]) == (12, 5 + 1 + 3 + 2 + 1 + 4, 4200)
    assert hist["queue"] == counts([0.05, 0.3, 2.5], SGLANG_QUEUE)


def test_trtllm_serve_has_tokens_cached_tokens_queue_and_prefill() -> None:
    server = Trtllm()
    server.finished("stop", prompt=10, generation=10, cached=4, queue=0.1, prefill=0.01)
    server.iteration(running=1, waiting=0, used=10, max_blocks=1000, hit_rate=0.1)
    server.success.labels(**server.labels, finished_reason="length")  # seen before its first increase

    def change() -> None:
        server.finished("stop", prompt=800, generation=200, cached=300, queue=0.4, prefill=0.02)
        server.finished("length", prompt=200, generation=56, cached=0, queue=1.6, prefill=0.2)
        server.iteration(running=7, waiting=2, used=300, max_blocks=1000, hit_rate=0.9)

    row, hist, _ = scrape(server, change)
    assert row["state"] == EndpointState.OK
    assert (row["prompt_tokens"], row["generation_tokens"], row["cached_tokens"]) == (1000, 256, 300)
    assert (row["requests_ok"], row["running"], row["waiting"], row["kv_cache_q4"]) == (2, 7, 2, 3000)
    assert hist["queue"] == counts([0.4, 1.6], REQUEST_LATENCY)
    assert hist["prefill"] == counts([0.02, 0.2], TRTLLM_PREFILL)


def dynamo_traffic(
    server: Dynamo, pools: Sequence[tuple[str, int]] = (("qwen/qwen3-0.6b", 1000),)
) -> Callable[[], None]:
    """Workers of the given pool sizes registered, one request each; the change: two requests,
    queue and inflight gauges, two decode workers' active blocks."""
    for model, blocks in pools:
        server.total_blocks.labels(model).set(blocks)
        server.inflight.labels(model).set(0)
        server.queued.labels(model).set(0)
        server.finished(model, prompt=100, generation=10, cached=0)

    def change() -> None:
        model = pools[0][0]
        for prompt, generation, cached in ((1200, 300, 512), (800, 212, 0)):
            server.finished(model, prompt=prompt, generation=generation, cached=cached)
        server.inflight.labels(model).set(10)
        server.queued.labels(model).set(4)
        server.active_blocks.labels("7587891", "0", "decode").set(300)
        server.active_blocks.labels("7587892", "0", "decode").set(500)

    return change


@pytest.mark.parametrize("output_tokens", [True, False], ids=["output_tokens_total", "histogram_sum"])
def test_dynamo_frontend_tokens_kv_and_cached(output_tokens: bool) -> None:
    server = Dynamo(output_tokens=output_tokens)
    row, _, _ = scrape(server, dynamo_traffic(server))
    # without output_tokens_total the output-sequence histogram's _sum counts the same tokens
    assert (row["prompt_tokens"], row["generation_tokens"], row["cached_tokens"]) == (2000, 512, 512)
    assert (row["requests_ok"], row["running"], row["waiting"]) == (2, 6, 4)
    assert row["kv_cache_q4"] == (300 / 1000 + 500 / 1000) / 2 * 10_000  # each worker's share, averaged
    assert row["state"] == EndpointState.OK


def test_dynamo_kv_stays_empty_when_the_worker_pool_is_ambiguous() -> None:
    server = Dynamo()
    row, _, _ = scrape(server, dynamo_traffic(server, (("a", 1000), ("b", 4000))))
    assert row["kv_cache_q4"] is None and row["generation_tokens"] == 512


def test_dynamo_metrics_prefix() -> None:
    server = Dynamo(prefix="nv_llm_http_service")
    change = dynamo_traffic(server)
    # without the prefix only the KV router's fixed-name gauges are read: a PARTIAL row that says why
    row, _, series = scrape(server, change)
    assert row["state"] == EndpointState.PARTIAL and "metrics_prefix" in series.warning
    assert row["generation_tokens"] is None and row["kv_cache_q4"] is None
    server = Dynamo(prefix="nv_llm_http_service")
    row, _, series = scrape(server, dynamo_traffic(server), metrics_prefix="nv_llm_http_service")
    assert row["engine"] == "dynamo" and row["model"] == "qwen/qwen3-0.6b"
    assert (row["prompt_tokens"], row["generation_tokens"], row["cached_tokens"]) == (2000, 512, 512)
    assert (row["requests_ok"], row["running"], row["waiting"], row["kv_cache_q4"]) == (2, 6, 4, 4000)
    assert row["state"] == EndpointState.OK and series.warning == ""
