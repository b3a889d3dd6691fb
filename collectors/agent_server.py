"""The `monitor agent` exporter: a tray's NVML collector behind /metrics (Prometheus text 0.0.4) and /healthz.

The page is collectors.mappings.frame_to_agent_page's: DCGM names where DCGM's field means the same,
documented `rackmon_*` names for the rest (collectors.agent_names, docs/agent-metrics.md); its counters
never go backwards while the agent runs (collectors.mappings.agent_page.CounterCarry says why and how).
NVML is polled when a scrape arrives (in a worker thread, never on the server's event loop), at most
once per `min_interval_s`, so two scrapers (the monitor and a Prometheus) share one poll. The same app
serves the simulated trays of `monitor sim`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from collectors.clock import Clock, WallClock
from collectors.mappings import AgentGpu, CounterCarry, XidTally, frame_to_agent_page

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What Prometheus' own client libraries send for the text format."""
DEFAULT_PORT = 9401
"""dcgm-exporter listens on 9400; the agent on the next port, so both can run on one tray."""

PageFn = Callable[[], bytes]


class AgentPage:
    """A tray's /metrics page from an NVML collector (or a simulated tray's), polled on demand."""

    def __init__(
        self,
        collector: Any,
        *,
        clock: Clock | None = None,
        hostname: str | None = None,
        min_interval_s: float = 0.25,
    ) -> None:
        """Args:
        collector: a collectors.nvml.NvmlCollector (its `gpus` and `poll`).
        clock: stamps each poll (a SimClock for the simulator).
        hostname: the page's Hostname label (this host's name by default).
        min_interval_s: scrapes closer together than this get the same page.
        """
        self.collector = collector
        self.clock = clock or WallClock()
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.min_interval_s = min_interval_s
        self.gpus = [
            AgentGpu(
                index=info.nvml_index,
                uuid=info.uuid,
                tray=info.tray,
                module=info.module,
                slot=info.slot,
                pci_bus_id=info.pci_bus_id or "",
                model_name=info.name or "",
                serial=info.serial or "",
                key=info.gpu if info.placed_by == "board" else None,
            )
            for info in collector.gpus
        ]
        self._xids = XidTally()
        self._counters = CounterCarry()
        self._lock = threading.Lock()
        self._page: bytes | None = None
        self._at = float("-inf")

    def render(self) -> bytes:
        """The current page (polls the collector unless the last poll is fresh enough)."""
        with self._lock:
            # The page's own clock decides freshness, not the wall clock: under a simulated clock that
            # runs faster than real time, a wall-clock cache handed one tick's scrape the previous
            # tick's page (no traffic in that interval, two intervals' worth in the next).
            now = self.clock.now()
            if self._page is None or now - self._at >= self.min_interval_s or now < self._at:
                frame = self._counters.apply(self.collector.poll(round(now * 1000)))
                self._xids.update(frame)
                text = frame_to_agent_page(frame, self.gpus, hostname=self.hostname, xids=self._xids)
                self._page = text.encode()
                self._at = now
            return self._page


def page_response(request: web.Request, body: bytes) -> web.Response:
    """A text-format response, gzipped when the scraper accepts it."""
    response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression(web.ContentCoding.gzip)
    return response


def metrics_handler(render: PageFn) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler serving `render()`'s page; the render runs in a worker thread."""

    async def handle(request: web.Request) -> web.Response:
        try:
            body = await asyncio.get_running_loop().run_in_executor(None, render)
        except Exception as err:  # a failed poll is this scrape's 500, not the server's end
            return web.Response(status=500, text=f"collection failed: {type(err).__name__}: {err}\n")
        return page_response(request, body)

    return handle


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP."""
    return web.Response(text="ok\n")


def agent_app(page: AgentPage) -> web.Application:
    """The agent's aiohttp application: GET /metrics and GET /healthz."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(page.render))
    app.router.add_get("/healthz", healthz)
    return app


def parse_listen(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """(host, port) from `HOST:PORT`, `[V6]:PORT`, `HOST` or `:PORT` (Go's form: every interface).

    Raises:
        ValueError: a malformed address or a port outside 0..65535 (the message is one line).
    """
    text = text.strip()
    if not text:
        raise ValueError("empty listen address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"listen address {text!r} is not [IPV6]:PORT")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        host = host or "0.0.0.0"
    elif ":" in text:
        raise ValueError(f"listen address {text!r}: write IPv6 addresses as [ADDR]:PORT")
    else:
        host, port_text = text, ""
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"listen address {text!r}: port {port_text!r} is not 0..65535")
    return host, int(port_text)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one.

    Raises:
        OSError: the address is taken or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
