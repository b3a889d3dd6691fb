"""The agent app over a simulated tray, and the whole simulated rack over loopback HTTP."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from collectors import agent_names as names
from collectors.agent_server import AgentPage, parse_listen
from collectors.aiohttp_serving import agent_app
from collectors.clock import SimClock
from collectors.mappings import GpuPageMapper
from collectors.nvml import NvmlCollector
from collectors.scrape import ScrapeSource
from collectors.sim import SimRack
from collectors.sim.http import SimServers
from collectors.sim.pages import go_float
from storage.frame import Frame
from storage.increase import increase
from storage.schemas import EndpointState, EventKind, GpuState

T0 = 1_760_000_000.0


@pytest.fixture
def clock() -> SimClock:
    return SimClock(T0)


async def test_agent_serves_the_tray_it_polls(clock: SimClock) -> None:
    rack = SimRack(seed=3, clock=clock)
    collector = NvmlCollector(rack.tray_of(16), name="tray16")
    page = AgentPage(collector, clock=clock, hostname="gb300-t16", min_interval_s=0)
    async with TestClient(TestServer(agent_app(page))) as client:
        health = await client.get("/healthz")
        assert health.status == 200 and await health.text() == "ok\n"
        clock.advance(5)
        resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert resp.headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(await resp.read()).decode()
        missing = await client.get("/nope")
        assert missing.status == 404
    # Prometheus' own parser reads the page (Prometheus can scrape the agent).
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "DCGM_FI_DEV_POWER_USAGE",
        names.GPU_INFO,
        "rackmon_nvlink_data_tx_bytes",
        "rackmon_gpu_nvlink_data_tx_bytes",
    } <= families
    # Mapping the page back gives the tray's 4 GPUs, placed by platform info, with 18 links each.
    frame = GpuPageMapper("gb300-t16").map(text, 1)
    gpu = frame.table("gpu").to_pylist()
    assert [r["gpu"] for r in gpu] == [60, 61, 62, 63]
    assert all(r["state"] == GpuState.OK and r["power_mw"] > 0 for r in gpu)
    assert frame.table("nvlink").num_rows == 4 * 18
    collector.close()


async def test_agent_answers_500_when_collection_fails(clock: SimClock) -> None:
    class Broken:
        gpus: tuple = ()

        def poll_plain(self, ts_ms: int) -> None:
            raise RuntimeError("NVML went away")

    async with TestClient(TestServer(agent_app(AgentPage(Broken(), clock=clock)))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 500
        assert "NVML went away" in await resp.text()


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9401") == ("127.0.0.1", 9401)
    assert parse_listen(":9500") == ("0.0.0.0", 9500)
    assert parse_listen("[::1]:9402") == ("::1", 9402)
    assert parse_listen("10.1.2.3") == ("10.1.2.3", 9401)
    for bad in ("host:port", "1.2.3.4:70000", "::1:80", "[::1", ""):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_go_floats_match_prometheus_client() -> None:
    from prometheus_client.utils import floatToGoString

    for value in (0.0, 212.0, 0.8123, 1.8996224e07, 6000117.0, 1.7957213885347493e09, float("inf"), 1e-05):
        assert go_float(value) == floatToGoString(value)


def wait_refused(url: str, limit_s: float = 10.0) -> None:
    """Return once a TCP connect to `url`'s port is refused (its listening socket is closed)."""
    parts = urlsplit(url)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.05)
    raise AssertionError(f"{url} still accepts connections after {limit_s} s")


def scrape(servers: SimServers, timeout_s: float = 10.0) -> ScrapeSource:
    assert servers.config is not None
    return ScrapeSource.from_config(servers.config, timeout_s=timeout_s)


def test_the_simulated_rack_over_http(clock: SimClock) -> None:
    rack = SimRack(seed=1, clock=clock, tp=2)
    with SimServers(rack) as servers:
        config = servers.config
        assert config is not None and len(config.trays) == 18 and len(config.servers) == 36
        source = scrape(servers)
        try:
            clock.advance(10)
            first = source.poll(int(clock.now() * 1000))
            clock.advance(10)
            second = source.poll(int(clock.now() * 1000))
        finally:
            source.close()
    gpu = second.table("gpu").to_pylist()
    assert [r["gpu"] for r in gpu] == list(range(72))
    assert second.table("nvlink").num_rows == 72 * 18
    serving = {r["endpoint"]: r for r in second.table("serving").to_pylist()}
    assert len(serving) == 36 and all(r["state"] == EndpointState.OK for r in serving.values())
    assert serving["vllm-01"]["gpus"] == "2,3"
    before = {r["endpoint"]: r["generation_tokens"] for r in first.table("serving").to_pylist()}
    rate = sum(serving[e]["generation_tokens"] - before[e] for e in serving) / 10
    # the rack serves ~15.2 k tokens/s per GPU (MLPerf-style claim the sim reproduces)
    assert 72 * 14_000 < rate < 72 * 16_500


@pytest.mark.parametrize("engine", ["sglang", "trtllm"])
def test_other_engine_formats(clock: SimClock, engine: str) -> None:
    rack = SimRack(seed=1, clock=clock, engines=(engine,))
    with SimServers(rack) as servers:
        source = scrape(servers)
        try:
            clock.advance(5)
            frame = source.poll(int(clock.now() * 1000))
        finally:
            source.close()
    serving = frame.table("serving").to_pylist()
    assert {r["engine"] for r in serving} == {engine}
    assert all(r["state"] == EndpointState.OK and r["running"] > 0 for r in serving)
    # trtllm-serve has token and cached-token counters too (tensorrt_llm/metrics/collector.py)
    assert all(r["generation_tokens"] is not None and r["cached_tokens"] is not None for r in serving)
    split = {"sglang": {"queue"}, "trtllm": {"queue", "prefill"}}[engine]  # how each splits TTFT
    assert {r["metric"] for r in frame.table("serving_hist").to_pylist()} == {"ttft", "itl", "e2e", *split}


@pytest.mark.parametrize(("mode", "reason"), [("refuse", "connection"), ("hang", "no answer")])
def test_endpoint_down_scenario(clock: SimClock, mode: str, reason: str) -> None:
    """A refused server is DOWN at once (a keep-alive reset first is one miss); a hung one after 3 misses."""
    rack = SimRack(seed=2, clock=clock, scenario="endpoint-down", fault_at=30)
    victim = rack.workload.instances[rack.scenario.fault.instance].name
    states: list[EndpointState] = []
    kinds: list[tuple[str, str]] = []
    with SimServers(rack, down_mode=mode) as servers:  # type: ignore[arg-type]
        source = scrape(servers, timeout_s=3.0)
        try:
            clock.advance(5)
            ok = source.poll(int(clock.now() * 1000))
            clock.advance(60)
            with rack.lock:
                rack.sync()
            if mode == "refuse":
                # The server loop closes the socket within a few WATCH_S of wall time; a poll before that
                # finds the connection dropped (a miss), and how many polls fit depends on the machine's
                # load. Judge "refused at once" from when the port refuses.
                assert servers.config is not None
                wait_refused(next(s.url for s in servers.config.servers if s.name == victim))
            # the hung server answers nothing from now; poll until the victim is down
            for _ in range(30):
                frame = source.poll(int(clock.now() * 1000))
                kinds += [(e["kind"], e["source"]) for e in frame.table("events").to_pylist()]
                status = {s.name: s for s in source.statuses()}[victim]
                if status.state != EndpointState.OK:
                    states.append(status.state)
                if status.state == EndpointState.DOWN:
                    break
                clock.advance(1)
        finally:
            source.close()
    assert all(r["state"] == EndpointState.OK for r in ok.table("serving").to_pylist())
    assert status.state == EndpointState.DOWN and status.reason.startswith(reason), status.reason
    if mode == "hang":
        assert states == [EndpointState.STALE, EndpointState.STALE, EndpointState.DOWN]
    else:
        assert len(states) <= 2  # refused at once, after at most one reset of the kept-alive connection
    rows = {r["endpoint"]: r for r in frame.table("serving").to_pylist()}
    assert rows[victim]["state"] == EndpointState.DOWN
    assert sum(r["state"] == EndpointState.OK for r in rows.values()) == 71
    assert kinds == [(EventKind.ENDPOINT_DOWN, victim)]


def test_base_port_and_taken_port(clock: SimClock) -> None:
    rack = SimRack(seed=1, clock=clock)
    with SimServers(rack) as first:
        taken = first.ports[0]
        with pytest.raises(OSError):
            SimServers(SimRack(seed=1, clock=clock), base_port=taken).start()


async def test_hang_server_does_not_block_others(clock: SimClock) -> None:
    """A hung server keeps its connection open and answers nothing; the loop still serves the rest."""
    rack = SimRack(seed=2, clock=clock)
    rack.workload.instances[0].answering = False
    with SimServers(rack, down_mode="hang") as servers:
        assert servers.config is not None
        dead, alive = servers.config.servers[0].url, servers.config.servers[1].url
        async with aiohttp.ClientSession() as session:
            hung = asyncio.create_task(session.get(dead))
            async with session.get(alive) as resp:
                assert resp.status == 200
                assert "vllm:generation_tokens_total" in await resp.text()
            assert not hung.done()
            hung.cancel()


def _per_series_increase(frames: list[Frame], table: str, keys: tuple[str, ...], column: str) -> dict:
    """Each series' increase over the frames, by Prometheus' reset rule (storage.increase)."""
    points: dict[tuple, list[tuple[int, float | None]]] = {}
    for frame in frames:
        if table not in frame.batches:
            continue
        for row in frame.table(table).to_pylist():
            points.setdefault(tuple(row[k] for k in keys), []).append((frame.ts_ms, row[column]))
    return {key: increase(series) for key, series in points.items()}


def test_restart_scenario_over_loopback(clock: SimClock) -> None:
    """One tray's servers stop, its driver reloads, its servers start again from 0: read over loopback
    (the tray agents and the vLLM pages), each series' increases add up to the sim's ground truth."""
    rack = SimRack(seed=2, clock=clock, scenario="restart", fault_at=20)
    scenario = rack.scenario
    restarted = [rack.workload.instances[i].name for i in scenario.instances]
    frames: list[Frame] = []
    tokens: list[dict[str, int]] = []
    carried: list[dict[int, float]] = []
    with SimServers(rack) as servers:
        source = scrape(servers, timeout_s=3.0)
        try:
            for _ in range(40):
                clock.advance(1)
                frames.append(source.poll(int(clock.now() * 1000)))
                with rack.lock:  # the clock stood still: the state the pages were rendered from
                    rack.sync()
                    tokens.append({i.name: i.generated_lifetime for i in rack.workload.instances})
                    carried.append(rack.nvlink_carried_kib())
        finally:
            source.close()
    kinds = [(e["kind"], e["source"]) for f in frames for e in f.table("events").to_pylist()]
    for name in restarted:
        assert kinds.count((EventKind.ENDPOINT_DOWN, name)) == kinds.count((EventKind.ENDPOINT_UP, name)) == 1
    serving = _per_series_increase(frames, "serving", ("endpoint",), "generation_tokens")
    assert {name for (name,) in serving} == tokens[0].keys()
    for (name,), got in serving.items():
        # Every endpoint answered the first and the last poll; a restarted one's counter dropped once.
        assert got == tokens[-1][name] - tokens[0][name] > 0, name
    sent = _per_series_increase(frames, "nvlink", ("gpu", "link"), "tx_kib")
    received = _per_series_increase(frames, "nvlink", ("gpu", "link"), "rx_kib")
    for g in scenario.gpus:
        moved = sum(v for (gpu, _), v in sent.items() if gpu == g)
        moved += sum(v for (gpu, _), v in received.items() if gpu == g)
        # 18 links x 2 directions of whole-KiB readings: under 1 KiB of truncation each.
        assert abs(moved - (carried[-1][g] - carried[0][g])) <= 2 * 18, g
