"""A server that answers OpenMetrics despite our text 0.0.4 Accept header, over real loopback HTTP.

The pages are prometheus_client's own OpenMetrics exposition of upstream's declarations
(tests/serving/upstream.py). Read as text 0.0.4 they used to parse and map to a row with counters
but no running, waiting, KV or histograms, state OK; now they map to the same row as the text page
of the same registry, and a page the rewrite cannot read is DOWN with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import Counter, Enum, Histogram, Info

from collectors.config import ServerTarget
from collectors.mappings import map_serving
from collectors.promtext import parse
from collectors.promtext_openmetrics import to_text_format
from collectors.scrape import ScrapeSource
from collectors.scrape_http import ACCEPT
from collectors.series_counters import SeriesCounters
from storage.schemas import EndpointState
from tests.serving.conftest import LivePages
from tests.serving.test_engine_names import vllm_server, vllm_traffic

T0 = 1_790_000_000_000
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.fixture
def source(live: LivePages) -> Iterator[ScrapeSource]:
    src = ScrapeSource(servers=[ServerTarget(name="vllm-om", url=live.url("vllm"), engine=None)], timeout_s=5)
    try:
        yield src
    finally:
        src.close()


def rows(frame: object) -> tuple[dict, dict[str, list[tuple[float, int]]]]:
    (row,) = frame.table("serving").to_pylist()  # type: ignore[attr-defined]
    hist: dict[str, list[tuple[float, int]]] = {}
    for r in frame.table("serving_hist").to_pylist() if "serving_hist" in frame.batches else []:  # type: ignore[attr-defined]
        hist.setdefault(r["metric"], []).append((r["le"], r["count"]))
    return row, hist


def text_rows() -> tuple[dict, dict]:
    """The same traffic served as text 0.0.4, mapped directly: what the OpenMetrics answer must give."""
    server = vllm_server()
    series = SeriesCounters()
    map_serving(server.page(), "vllm-om", T0, series=series)
    vllm_traffic(server)()
    return rows(map_serving(server.page(), "vllm-om", T0 + 1000, series=series))


@pytest.mark.parametrize(
    "content_type", [OPENMETRICS, "text/plain; charset=utf-8"], ids=["labelled", "mislabelled"]
)
def test_an_openmetrics_answer_maps_like_the_text_page(
    live: LivePages, source: ScrapeSource, content_type: str
) -> None:
    server = vllm_server()
    live.pages["vllm"] = (server.openmetrics(), content_type)
    source.poll(T0)
    vllm_traffic(server)()
    live.pages["vllm"] = (server.openmetrics(), content_type)
    row, hist = rows(source.poll(T0 + 1000))
    (status,) = source.statuses()
    assert (status.state, status.reason, status.engine) == (EndpointState.OK, "", "vllm")
    assert row["state"] == EndpointState.OK
    assert (row["running"], row["waiting"], row["kv_cache_q4"]) == (30, 3, 6000)
    expected_row, expected_hist = text_rows()
    assert {k: v for k, v in row.items() if k != "gpus"} == {
        k: v for k, v in expected_row.items() if k != "gpus"
    }
    assert hist == expected_hist and hist["queue"][-1][1] == 4
    assert live.accepts == [ACCEPT, ACCEPT]  # we asked for text 0.0.4 all along


def test_an_openmetrics_page_cut_short_is_down_with_its_reason(live: LivePages, source: ScrapeSource) -> None:
    page = vllm_server().openmetrics()
    live.pages["vllm"] = (page[: page.rindex("# EOF")], OPENMETRICS)
    row, _ = rows(source.poll(T0))
    (status,) = source.statuses()
    assert status.state == EndpointState.DOWN and row["state"] == EndpointState.DOWN
    assert "malformed page" in status.reason and "# EOF" in status.reason


def test_every_openmetrics_construct_prometheus_client_writes_is_read() -> None:
    server = vllm_server()
    Info("vllm:build", "Build information.", registry=server.registry).info({"version": "0.32.0"})
    Enum("vllm:engine_state", "Engine state.", states=["awake", "asleep"], registry=server.registry).state(
        "awake"
    )
    Counter("vllm:spec_decode_num_drafts", "Number of spec decoding drafts.", registry=server.registry).inc(
        3, exemplar={"trace_id": "a # b } c"}
    )
    hist = Histogram(
        "vllm:iteration_latency_seconds", "Step time.", buckets=[0.1, 1.0], registry=server.registry
    )
    hist.observe(0.05, exemplar={"trace_id": "t1"})
    page = server.openmetrics()
    assert "# EOF" in page and " # {" in page  # exemplars are on the page
    families = parse(to_text_format(page))
    assert [s.value for s in families["vllm:spec_decode_num_drafts_total"].samples] == [3.0]
    assert families["vllm:build_info"].samples[0].labels["version"] == "0.32.0"
    assert {s.labels["vllm_engine_state"]: s.value for s in families["vllm:engine_state"].samples} == {
        "awake": 1.0,
        "asleep": 0.0,
    }
    latency = families["vllm:iteration_latency_seconds"]
    assert latency.type == "histogram" and {s.name for s in latency.samples} == {
        "vllm:iteration_latency_seconds_bucket",
        "vllm:iteration_latency_seconds_count",
        "vllm:iteration_latency_seconds_sum",
    }
    assert not [name for name in families if name.endswith("_created")]
    # the rewrite keeps the page's lines where they were: errors name the page's own line numbers
    assert len(to_text_format(page).split("\n")) == len(page.split("\n"))
