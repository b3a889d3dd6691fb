"""ScrapeSource against real loopback servers: good pages, and every way an endpoint can fail."""

from __future__ import annotations

import pytest

from collectors.config import ServerTarget, TrayTarget
from collectors.scrape import ScrapeSource
from storage.schemas import EndpointState, EventKind, GpuState
from tests.net.conftest import PageServer, free_port

TS = 1_790_000_000_000


def rows(frame, table: str) -> list[dict]:
    return frame.table(table).to_pylist()


def events(frame) -> list[tuple[str, str]]:
    return [(e["kind"], e["source"]) for e in rows(frame, "events")]


@pytest.fixture
def faulty(pages: PageServer):
    """A tray agent, a vLLM server that detects its engine, and one endpoint per fault."""
    servers = [ServerTarget("good", pages.url("/vllm"), gpus=(8, 9))]
    for name in ("hang", "trickle", "midbody", "big", "garbage", "error"):
        servers.append(ServerTarget(name, pages.url(f"/{name}"), engine="vllm"))
    servers.append(ServerTarget("refused", f"http://127.0.0.1:{free_port()}/metrics", engine="vllm"))
    source = ScrapeSource(
        [TrayTarget(3, "tray03", pages.url("/agent"))], servers, timeout_s=0.4, max_bytes=4 << 20
    )
    yield source
    source.close()


def test_each_fault_stays_with_its_endpoint(faulty: ScrapeSource) -> None:
    frame = faulty.poll(TS)
    gpu = rows(frame, "gpu")
    assert [r["gpu"] for r in gpu] == [8, 9, 10, 11]
    assert all(r["state"] == GpuState.OK for r in gpu)
    assert len(rows(frame, "nvlink")) == 4 * 18
    serving = {r["endpoint"]: r for r in rows(frame, "serving")}
    assert serving["good"]["state"] == EndpointState.OK
    assert serving["good"]["engine"] == "vllm"
    assert serving["good"]["gpus"] == "8,9"
    assert serving["good"]["generation_tokens"] == 0  # first sight: a first sample is no increase
    hist = rows(frame, "serving_hist")
    assert {r["metric"] for r in hist if r["endpoint"] == "good"} == {"ttft", "itl", "e2e"}
    assert {r["endpoint"] for r in hist} == {"good"}
    status = {s.name: s for s in faulty.statuses()}
    assert status["hang"].state == EndpointState.STALE
    assert status["trickle"].state == EndpointState.STALE
    assert "no answer within 0.4 s" in status["hang"].reason
    assert status["midbody"].reason == "connection closed mid-page"
    assert status["big"].reason == "page larger than 4 MiB"
    assert status["garbage"].reason.startswith("malformed page: line 1")
    assert status["error"].reason == "HTTP 500"
    assert status["refused"].reason == "connection refused"
    for name in ("big", "garbage", "error", "refused"):
        assert status[name].state == EndpointState.DOWN, name
        assert serving[name]["state"] == EndpointState.DOWN
        assert serving[name]["generation_tokens"] is None
    for name in ("hang", "trickle", "midbody"):  # a miss: stale, down only if it repeats
        assert status[name].state == EndpointState.STALE, name
        assert serving[name]["state"] == EndpointState.STALE
    assert status["tray03"].state == EndpointState.OK and status["tray03"].latency_s is not None
    down = {source for kind, source in events(frame) if kind == EventKind.ENDPOINT_DOWN}
    assert down == {"big", "garbage", "error", "refused"}
    for event in rows(frame, "events"):
        assert event["detail"].startswith(f"{event['source']}: "), event


def test_down_and_up_events_once_per_change(pages: PageServer) -> None:
    source = ScrapeSource([], [ServerTarget("flappy", pages.url("/toggle"))], timeout_s=2.0)
    try:
        assert events(source.poll(TS)) == []
        pages.up = False
        went = source.poll(TS + 1000)
        assert events(went) == [(EventKind.ENDPOINT_DOWN, "flappy")]
        assert "HTTP 503" in rows(went, "events")[0]["detail"]
        # still down: no second event; the engine learnt earlier is kept on the DOWN row
        still = source.poll(TS + 2000)
        assert events(still) == []
        assert rows(still, "serving")[0]["engine"] == "vllm"
        pages.up = True
        back = source.poll(TS + 3000)
        assert events(back) == [(EventKind.ENDPOINT_UP, "flappy")]
        assert rows(back, "serving")[0]["state"] == EndpointState.OK
    finally:
        source.close()


def test_a_silent_tray_keeps_its_gpus_as_stale_rows(pages: PageServer) -> None:
    source = ScrapeSource([TrayTarget(3, "tray03", pages.url("/agent"))], timeout_s=2.0)
    try:
        first = rows(source.poll(TS), "gpu")
        assert len(first) == 4
        source._endpoints[0].status.url = pages.url("/error")  # the tray's agent now answers 500
        later = source.poll(TS + 1000)
        gpu = rows(later, "gpu")
        assert [r["uuid"] for r in gpu] == [r["uuid"] for r in first]
        assert {r["state"] for r in gpu} == {GpuState.STALE}
        assert all(r["power_mw"] is None for r in gpu)
        assert events(later) == [(EventKind.ENDPOINT_DOWN, "tray03")]
    finally:
        source.close()


@pytest.mark.parametrize("name", ["vllm", "sglang", "trtllm"])
def test_engine_detected_from_the_page(pages: PageServer, name: str) -> None:
    source = ScrapeSource([], [ServerTarget(name, pages.url(f"/{name}"))], timeout_s=2.0)
    try:
        frame = source.poll(TS)
        assert rows(frame, "serving")[0]["engine"] == name
        assert source.statuses()[0].engine == name
    finally:
        source.close()


def test_a_page_with_no_serving_metrics_is_an_error_for_that_server(pages: PageServer) -> None:
    source = ScrapeSource([], [ServerTarget("not-a-server", pages.url("/dcgm"))], timeout_s=2.0)
    try:
        frame = source.poll(TS)
        status = source.statuses()[0]
        assert status.state == EndpointState.DOWN
        assert "no vLLM, SGLang" in status.reason
        assert rows(frame, "serving")[0]["engine"] == "unknown"
    finally:
        source.close()


def test_no_gzip_on_loopback_and_keep_alive(pages: PageServer) -> None:
    """A loopback endpoint is not asked for gzip (compressing a page that never leaves the host is CPU on
    both ends for nothing; other hosts are: tests/net/test_scrape_client.py), and later ticks reuse the
    first tick's connection."""
    source = ScrapeSource([], [ServerTarget("good", pages.url("/vllm"))], timeout_s=2.0)
    try:
        for tick in range(3):
            frame = source.poll(TS + 1000 * tick)
            assert rows(frame, "serving")[0]["state"] == EndpointState.OK
        assert pages.encodings == [None] * 3
        assert len(pages.peers) == 3 and len(set(pages.peers)) == 1
    finally:
        source.close()


def test_poll_after_close_is_refused(pages: PageServer) -> None:
    source = ScrapeSource([], [ServerTarget("good", pages.url("/vllm"))])
    source.close()
    source.close()
    with pytest.raises(RuntimeError, match="closed"):
        source.poll(TS)
