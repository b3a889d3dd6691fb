"""Arrow answers that must not become rows: each gives its endpoint one clear state, the others go on.

A loopback server answers a real agent's Arrow stream (a simulated tray behind the agent app), and
next to it Arrow answers that are broken in one way each; the golden dcgm-exporter page stands for a
text-only tray. Prometheus, which does not name Arrow, scrapes the agent and gets text.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from aiohttp import web

from collectors.agent_server import AgentPage, wants_arrow
from collectors.aiohttp_serving import agent_handler
from collectors.clock import SimClock
from collectors.config import ServerTarget, TrayTarget
from collectors.mappings.tray_stream import MEDIA_TYPE, VERSION_KEY
from collectors.nvml import NvmlCollector
from collectors.rack import gpu_index
from collectors.scrape import ScrapeSource
from collectors.scrape_http import ACCEPT, TRAY_ACCEPT
from collectors.sim import SimRack
from storage.schemas import EndpointState
from tests.loopback import LoopbackServer
from tests.net.conftest import PageServer
from tests.peer_servers import need, prometheus_scraping

MAX_BYTES = 1 << 20
Handler = Callable[[web.Request], Awaitable[web.Response]]
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""What Prometheus 2.42 asks a target for (prometheus/prometheus scrape/scrape.go, acceptHeader)."""


def _stream(batch: pa.RecordBatch, metadata: dict[bytes, bytes] | None) -> bytes:
    schema = batch.schema.with_metadata(metadata) if metadata is not None else batch.schema
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch.replace_schema_metadata(schema.metadata))
    return sink.getvalue().to_pybytes()


class ArrowServer(LoopbackServer):
    """/good: a simulated tray 5 behind the real agent handler; the other routes answer Arrow broken."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = SimClock(1_760_000_000.0)
        self.rack = SimRack(seed=4, clock=self.clock)
        self.collector = NvmlCollector(self.rack.tray_of(5), name="tray05")
        self.page = AgentPage(self.collector, clock=self.clock, hostname="tray05", min_interval_s=0)

    def routes(self, app: web.Application) -> None:
        """/good, and one route per way an Arrow answer can be wrong."""
        good = self.page.render_arrow()
        gpu_only = pa.RecordBatch.from_pylist([{"gpu": 1}])
        wrong: dict[str, bytes] = {
            "garbage": b"\xff\xff\xff\xff\x10\x00\x00\x00not an arrow stream at all",
            "truncated": good[: len(good) // 2],
            "version": _stream(pa.ipc.open_stream(good).read_next_batch(), {VERSION_KEY: b"2"}),
            "schema": _stream(gpu_only, {VERSION_KEY: b"1"}),
            "big": good + b"\x00" * (MAX_BYTES + 1),
            "two-rows": _stream(
                pa.concat_batches([pa.ipc.open_stream(good).read_next_batch()] * 2), {VERSION_KEY: b"1"}
            ),
        }
        app.router.add_get("/good", agent_handler(self.page))
        app.router.add_get("/always", self._always(good))
        app.router.add_get("/flip", self._flip(good, wrong["truncated"]))
        for name, body in wrong.items():
            app.router.add_get(f"/{name}", self._always(body))

    @staticmethod
    def _always(body: bytes) -> Handler:
        async def handle(_request: web.Request) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": MEDIA_TYPE})

        return handle

    @staticmethod
    def _flip(first: bytes, then: bytes) -> Handler:
        answers = [first]

        async def handle(_request: web.Request) -> web.Response:
            body = answers.pop() if answers else then
            return web.Response(body=body, headers={"Content-Type": MEDIA_TYPE})

        return handle

    def stop(self) -> None:
        """Stop serving, then the tray's collector."""
        super().stop()
        self.collector.close()


@pytest.fixture
def arrow_server() -> Iterator[ArrowServer]:
    server = ArrowServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


BROKEN = {
    "garbage": "malformed Arrow answer: malformed Arrow stream",
    "truncated": "malformed Arrow answer",
    "version": "Arrow stream of version 2, not 1",
    "schema": "another schema",
    "two-rows": "2 rows",
    "big": "page larger than 1 MiB",
}


def test_each_broken_arrow_answer_downs_only_its_endpoint(
    arrow_server: ArrowServer, pages: PageServer
) -> None:
    trays = [TrayTarget(5, "tray05", arrow_server.url("/good")), TrayTarget(7, "dcgm07", pages.url("/dcgm"))]
    trays += [TrayTarget(9 + i, name, arrow_server.url(f"/{name}")) for i, name in enumerate(BROKEN)]
    servers = [
        ServerTarget("arrow-server", arrow_server.url("/always")),
        ServerTarget("vllm", pages.url("/vllm")),
    ]
    source = ScrapeSource(trays, servers, timeout_s=10, max_bytes=MAX_BYTES)
    try:
        frames = []
        for tick in range(2):
            arrow_server.clock.advance(1)
            frames.append(source.poll(1_760_000_000_000 + tick * 1000))
        status = {s.name: s for s in source.statuses()}
    finally:
        source.close()
    for name, reason in BROKEN.items():
        assert status[name].state == EndpointState.DOWN, name
        assert reason in status[name].reason, (name, status[name].reason)
    assert status["arrow-server"].state == EndpointState.DOWN
    assert "Arrow answer from an inference server" in status["arrow-server"].reason
    assert (status["tray05"].state, status["tray05"].answer) == (EndpointState.OK, "arrow")
    assert (status["dcgm07"].state, status["dcgm07"].answer) == (EndpointState.OK, "text")
    assert status["vllm"].state == EndpointState.OK
    for frame in frames:
        gpu = frame.table("gpu").to_pydict()
        # Rows of the good trays only: the broken ones never had a good answer to stand in for.
        assert sorted(set(gpu["tray"])) == [5, 7]
        assert [g for g, t in zip(gpu["gpu"], gpu["tray"], strict=True) if t == 5] == [
            gpu_index(5, m) for m in (1, 2, 3, 4)
        ]
        assert set(gpu["state"]) == {0}
        assert frame.table("nvlink").num_rows == 4 * 18  # tray 5's links (the dcgm page has none)
        serving = frame.table("serving").to_pydict()
        assert dict(zip(serving["endpoint"], serving["state"], strict=True)) == {
            "arrow-server": int(EndpointState.DOWN),
            "vllm": int(EndpointState.OK),
        }


def test_a_tray_that_turns_bad_shows_its_gpus_stale(arrow_server: ArrowServer) -> None:
    """After a good Arrow answer, a broken one: the tray's GPUs stand in as STALE, no numbers of it."""
    source = ScrapeSource([TrayTarget(5, "tray05", arrow_server.url("/flip"))], timeout_s=10)
    try:
        good = source.poll(1_760_000_001_000)
        bad = source.poll(1_760_000_002_000)
        (status,) = source.statuses()
    finally:
        source.close()
    assert set(good.table("gpu").column("state").to_pylist()) == {0}
    assert status.state == EndpointState.DOWN and "malformed Arrow answer" in status.reason
    rows = bad.table("gpu").to_pydict()
    assert rows["gpu"] == good.table("gpu").column("gpu").to_pylist()
    assert set(rows["state"]) == {2}  # GpuState.STALE
    assert bad.table("nvlink").num_rows == 0


@pytest.mark.parametrize(
    ("accept", "arrow"),
    [
        (TRAY_ACCEPT, True),
        (MEDIA_TYPE, True),
        (ACCEPT, False),
        (PROMETHEUS_ACCEPT, False),
        ("*/*", False),
        ("", False),
        (f"{MEDIA_TYPE};q=0.5,text/plain;q=0.9", False),
        (f"{MEDIA_TYPE};q=0,*/*", False),
        (f"text/plain;q=0.2, {MEDIA_TYPE.upper()} ;q=0.8", True),
    ],
)
def test_only_a_client_naming_arrow_first_gets_it(accept: str, arrow: bool) -> None:
    assert wants_arrow(accept) is arrow


def test_prometheus_scraping_the_agent_reads_text(tmp_path: Path) -> None:
    """A real Prometheus 2.42 scrapes the agent app: its Accept does not name Arrow, the page is text."""
    need("prometheus")
    clock = SimClock(1_760_000_000.0)
    collector = NvmlCollector(SimRack(seed=4, clock=clock).tray_of(5), name="tray05")
    server = _AgentServer(AgentPage(collector, clock=clock, hostname="tray05", min_interval_s=0))
    server.start()
    try:
        job = f"  - job_name: agent\n    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
        with prometheus_scraping(tmp_path, job) as prometheus:
            deadline = time.monotonic() + 120
            power: list[dict] = []
            while time.monotonic() < deadline and not power:  # waiting for a child's scrape
                with contextlib.suppress(OSError, KeyError, ValueError):
                    power = _query(prometheus.port, 'DCGM_FI_DEV_POWER_USAGE{job="agent"}')
                time.sleep(0.5)
            (up,) = _query(prometheus.port, 'up{job="agent"}')
    finally:
        server.stop()
        collector.close()
    assert up["value"][1] == "1"
    assert len(power) == 4


class _AgentServer(LoopbackServer):
    def __init__(self, page: AgentPage) -> None:
        super().__init__()
        self.page = page

    def routes(self, app: web.Application) -> None:
        """/metrics as the agent app serves it (collectors.agent_server.agent_app)."""
        app.router.add_get("/metrics", agent_handler(self.page))


def _query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)["data"]["result"]
