"""Real HTTP servers on loopback for the network tests: well-behaved and faulty /metrics endpoints.

The servers run on their own asyncio loop in a thread, because ScrapeSource.poll() blocks its caller
(as the poller's thread does) and must not block the loop that serves the pages.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from collectors.aiohttp_serving import page_response
from collectors.mappings import frame_to_agent_page
from tests.loopback import LoopbackServer
from tests.scrape.pagegen import agent_gpus, tray_frame

PAGES = Path(__file__).resolve().parents[1] / "data" / "pages"


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PageServer(LoopbackServer):
    """Serves golden, generated and broken pages on 127.0.0.1 from a background loop.

    Routes: /vllm /sglang /trtllm /dcgm (golden pages), /agent (tray 3's agent page, advancing one
    tick per request), /toggle (vLLM page while `up`, else HTTP 503), /hang (never answers), /trickle
    (a byte every 0.2 s), /midbody (closes after part of the body), /big (a 50 MB valid page),
    /garbage (not the text format), /error (HTTP 500), /gated (the vLLM page once the gate is
    open; `gated_arrived` is set when `gated_expected` requests wait at a closed gate).
    """

    def __init__(self) -> None:
        super().__init__()
        self.up = True
        self.agent_tick = 0
        self.released = asyncio.Event()
        self.peers: list[Any] = []
        self.encodings: list[str | None] = []
        self.gate = asyncio.Event()
        self.gated_waiting = 0
        self.gated_expected = 0
        self.gated_arrived = threading.Event()

    def routes(self, app: web.Application) -> None:
        """Every route of the class docstring; the gate and the release events made on the server's loop."""
        self.released = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        for name in ("vllm", "sglang", "trtllm", "dcgm"):
            app.router.add_get(f"/{name}", self._golden(name))
        for path, handler in (
            ("/agent", self._agent),
            ("/toggle", self._toggle),
            ("/hang", self._hang),
            ("/trickle", self._trickle),
            ("/midbody", self._midbody),
            ("/big", self._big),
            ("/garbage", self._garbage),
            ("/error", self._error),
            ("/gated", self._gated),
        ):
            app.router.add_get(path, handler)

    def stop(self) -> None:
        """Release the hung handlers first, so the server's cleanup does not wait on them."""
        self.loop.call_soon_threadsafe(self.released.set)
        super().stop()

    def _golden(self, name: str) -> Any:
        body = (PAGES / f"{name}.txt").read_bytes()

        async def handle(request: web.Request) -> web.Response:
            assert request.transport is not None
            self.peers.append(request.transport.get_extra_info("peername"))
            response = page_response(request, body)
            self.encodings.append(request.headers.get("Accept-Encoding"))
            return response

        return handle

    async def _agent(self, request: web.Request) -> web.Response:
        self.agent_tick += 1
        page = frame_to_agent_page(tray_frame(3, self.agent_tick), agent_gpus(3), hostname="tray03")
        return page_response(request, page.encode())

    async def _toggle(self, request: web.Request) -> web.Response:
        if not self.up:
            return web.Response(status=503, text="down\n")
        return page_response(request, (PAGES / "vllm.txt").read_bytes())

    async def _hang(self, request: web.Request) -> web.Response:
        await self.released.wait()
        return web.Response(text="too late\n")

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain; version=0.0.4"})
        await response.prepare(request)
        for _ in range(1000):
            await response.write(b"#")
            await asyncio.sleep(0.2)
        return response

    async def _midbody(self, request: web.Request) -> web.StreamResponse:
        body = (PAGES / "vllm.txt").read_bytes()
        response = web.StreamResponse(headers={"Content-Length": str(len(body))})
        await response.prepare(request)
        await response.write(body[: len(body) // 3])
        assert request.transport is not None
        request.transport.close()
        return response

    async def _big(self, request: web.Request) -> web.StreamResponse:
        line = b'big_gauge{le_not="x",instance="a-rather-long-label-value-to-fill-the-page"} 1.0\n'
        chunk = b"# TYPE big_gauge gauge\n" + line * (1_000_000 // len(line))
        response = web.StreamResponse(headers={"Content-Type": "text/plain; version=0.0.4"})
        await response.prepare(request)
        for _ in range(50):  # 50 MB; the reader must stop long before the end
            await response.write(chunk)
        return response

    def close_gate(self, expected: int) -> None:
        """Hold /gated answers until open_gate(); gated_arrived is set once `expected` wait."""

        async def close() -> None:
            self.gate.clear()
            self.gated_waiting, self.gated_expected = 0, expected
            self.gated_arrived.clear()

        self.run(close())

    def open_gate(self) -> None:
        """Let every held /gated request answer."""
        self.loop.call_soon_threadsafe(self.gate.set)

    async def _gated(self, request: web.Request) -> web.Response:
        if not self.gate.is_set():
            self.gated_waiting += 1
            if self.gated_waiting >= self.gated_expected:
                self.gated_arrived.set()
            await self.gate.wait()
        return page_response(request, (PAGES / "vllm.txt").read_bytes())

    async def _garbage(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>this is { not a metrics page\n")

    async def _error(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="internal error\n")


@pytest.fixture
def pages() -> Iterator[PageServer]:
    """A running PageServer."""
    server = PageServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
