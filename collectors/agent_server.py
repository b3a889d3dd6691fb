"""The `monitor agent` exporter's answers: a tray's NVML collector behind /metrics (Prometheus text 0.0.4).

/metrics answers text to every scraper but one that names the tray Arrow stream first in its Accept
header (our collector: collectors.mappings.tray_arrow, docs/agent-api.md); both render one poll.

The page is collectors.mappings.frame_to_agent_page's: DCGM names where DCGM's field means the same,
documented `rackmon_*` names for the rest (collectors.agent_names, docs/agent-metrics.md); its counters
never go backwards while the agent runs (collectors.mappings.agent_page.CounterCarry says why and how).
NVML is polled when a scrape arrives (in a worker thread, never on the server's event loop), at most
once per `min_interval_s`, so two scrapers (the monitor and a Prometheus) share one poll. Two servers give
these answers: collectors.agent_http (`monitor agent`: asyncio and h11, no aiohttp) and
collectors.aiohttp_serving (the simulated trays of `monitor sim`). Nothing here loads pyarrow or aiohttp.
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from collectors.clock import Clock, WallClock
from collectors.mappings import AgentGpu, CounterCarry, XidTally, frame_to_agent_page
from collectors.mappings.tray_stream import MEDIA_TYPE as ARROW
from collectors.mappings.tray_stream import frame_to_tray_stream
from storage.plain_frame import PlainFrame

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
        collector: a collectors.nvml.NvmlCollector (its `gpus` and `poll_plain`).
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
        self._frame: PlainFrame | None = None
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
                self._frame = self._counters.apply(self.collector.poll_plain(round(now * 1000)))
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


class Answer(NamedTuple):
    """An HTTP answer: status, headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes


def failure_text(err: Exception) -> str:
    """The body of a 500 for a poll that failed."""
    return f"collection failed: {type(err).__name__}: {err}\n"


def agent_answer(page: AgentPage, accept: str, accept_encoding: str) -> Answer:
    """The agent's answer to GET /metrics: text by default (gzipped when accepted), the tray Arrow
    stream to a client that asks for it first; a failed poll is this scrape's 500, not the server's end.

    Blocking (it may poll NVML): servers call it in a worker thread. The Arrow answer is not gzipped: it
    is a few KB of fixed-width integers for a tray, and compressing it would cost both ends more CPU
    than it saves on a rack's network.
    """
    arrow = wants_arrow(accept)
    try:
        body = page.answer(ARROW if arrow else TEXT)
    except Exception as err:
        return Answer(500, {"Content-Type": "text/plain; charset=utf-8"}, failure_text(err).encode())
    headers = {"Content-Type": ARROW if arrow else CONTENT_TYPE}
    if not arrow and "gzip" in accept_encoding:
        # Level 1: a tray's 72 kB page to 6.0 kB in 0.16 ms; level 6 (zlib's default) saves 0.6 kB more
        # for 0.6 ms of the tray's CPU on every scrape.
        body = gzip.compress(body, compresslevel=1, mtime=0)
        headers["Content-Encoding"] = "gzip"
    # One URL, two representations, each maybe gzipped (RFC 9110 section 12.5.5).
    headers["Vary"] = "Accept, Accept-Encoding"
    return Answer(200, headers, body)


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
