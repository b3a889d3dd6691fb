"""The `monitor agent` exporter: a tray's NVML collector behind /metrics (Prometheus text 0.0.4) and /healthz.

/metrics answers text to every scraper but one that names the tray Arrow stream first in its Accept
header (our collector: collectors.mappings.tray_arrow, docs/agent-api.md); both render one poll.

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
from collectors.mappings.tray_arrow import MEDIA_TYPE as ARROW
from collectors.mappings.tray_arrow import frame_to_tray_stream
from storage.frame import Frame

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What Prometheus' own client libraries send for the text format."""
TEXT = "text/plain"
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
        self._frame: Frame | None = None
        self._answers: dict[str, bytes] = {}
        """This poll's answers by media type, each rendered when first asked for."""
        self._at = float("-inf")

    def render(self) -> bytes:
        """The current text page (polls the collector unless the last poll is fresh enough)."""
        return self.answer(TEXT)

    def render_arrow(self) -> bytes:
        """The current frame as a tray Arrow stream (collectors.mappings.tray_arrow)."""
        return self.answer(ARROW)

    def answer(self, media_type: str) -> bytes:
        """The current answer in `media_type` (TEXT or ARROW): both render the same poll's frame."""
        with self._lock:
            # The page's own clock decides freshness, not the wall clock: under a simulated clock that
            # runs faster than real time, a wall-clock cache handed one tick's scrape the previous
            # tick's page (no traffic in that interval, two intervals' worth in the next).
            now = self.clock.now()
            if self._frame is None or now - self._at >= self.min_interval_s or now < self._at:
                self._frame = self._counters.apply(self.collector.poll(round(now * 1000)))
                self._xids.update(self._frame)
                self._answers = {}
                self._at = now
            body = self._answers.get(media_type)
            if body is None:
                render = frame_to_tray_stream if media_type == ARROW else frame_to_agent_page
                rendered = render(self._frame, self.gpus, hostname=self.hostname, xids=self._xids)
                body = self._answers[media_type] = (
                    rendered.encode() if isinstance(rendered, str) else rendered
                )
            return body


def wants_arrow(accept: str) -> bool:
    """Whether an Accept header asks for the tray Arrow stream before text (RFC 9110 section 12.5.1).

    Only a header that names ARROW counts (a `*/*` does not: Prometheus and any other scraper that
    does not know the stream get text), with a q above 0 and at least that of any text type it names.
    """
    arrow_q = text_q = 0.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == ARROW:
            arrow_q = max(arrow_q, q)
        elif media.startswith("text/") or media.startswith("application/openmetrics-text"):
            text_q = max(text_q, q)
    return arrow_q > 0 and arrow_q >= text_q


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


def agent_handler(page: AgentPage) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The agent's /metrics handler: text by default, the tray Arrow stream to a client that asks first.

    The Arrow answer is not gzipped: it is a few KB of fixed-width integers for a tray, and
    compressing it would cost both ends more CPU than it saves on a rack's network.
    """
    text = metrics_handler(page.render)

    async def handle(request: web.Request) -> web.Response:
        if not wants_arrow(request.headers.get("Accept", "")):
            response = await text(request)
        else:
            try:
                body = await asyncio.get_running_loop().run_in_executor(None, page.render_arrow)
            except Exception as err:  # a failed poll is this scrape's 500, not the server's end
                return web.Response(status=500, text=f"collection failed: {type(err).__name__}: {err}\n")
            response = web.Response(body=body, headers={"Content-Type": ARROW})
        response.headers["Vary"] = "Accept"  # one URL, two representations (RFC 9110 section 12.5.5)
        return response

    return handle


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP."""
    return web.Response(text="ok\n")


def agent_app(page: AgentPage) -> web.Application:
    """The agent's aiohttp application: GET /metrics and GET /healthz."""
    app = web.Application()
    app.router.add_get("/metrics", agent_handler(page))
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
