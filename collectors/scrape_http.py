"""The scrape source's HTTP side: one GET per endpoint and tick, bounded in time and bytes.

Runs on the scrape source's own asyncio loop (collectors.scrape). A fetch never raises for an
endpoint's fault: it returns the page, or the endpoint's state (STALE for a miss, DOWN for a failure)
and a one-line reason.
"""

from __future__ import annotations

import asyncio
import errno
import queue
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collectors.http_answer import BadAnswer, PageCut, PageTooBig
from collectors.mappings.tray_stream import MEDIA_TYPE as ARROW
from collectors.scrape_client import DEFAULT_IDLE_PER_ORIGIN, ConnectError, ConnectionLost, ScrapeClient
from storage.schemas import EndpointState

if TYPE_CHECKING:
    import aiohttp

DEFAULT_MAX_BYTES = 10 << 20
"""The largest page read (after gzip decoding); a bigger page is an error for its endpoint."""
ACCEPT = "text/plain;version=0.0.4;escaping=underscores;q=1.0,*/*;q=0.1"
"""Plain text 0.0.4 only: OpenMetrics negotiation renames `vllm:` samples (serving.md section 0). Never
quoted UTF-8 names (Prometheus 3, text 1.0.0, `escaping=allow-utf-8`), which 0.0.4 cannot say: the
explicit `escaping=underscores` makes client_golang write legacy names whatever its default
(prometheus/common expfmt/encode.go NegotiateAccept); prometheus_client does so for any 0.0.4 ask."""
TRAY_ACCEPT = f"{ARROW};q=1.0,{ACCEPT.replace('q=1.0', 'q=0.9')}"
"""A tray's ask: the agent's Arrow stream first (collectors.mappings.tray_arrow), else the same text
as any endpoint: dcgm-exporter, an older agent or any text-only exporter answers text as before."""
BATCH_GAP_S = 0.1
BATCH_WINDOW_S = 0.5
"""Pages are handed on in batches: a batch takes pages while each lands within BATCH_GAP_S of the last,
for at most BATCH_WINDOW_S after its first. Mapping each page the moment it landed had the poll thread
and the HTTP loop trading the GIL: +10-25 ms of CPU a tick in bench/bench_scrape.py. A healthy rack's
pages land in one burst of a few hundred ms; a hung endpoint does not hold a batch past its window."""


@dataclass(frozen=True)
class Fetched:
    """One HTTP fetch: the page's text, or why there is none."""

    text: str | None
    latency_s: float
    state: EndpointState
    """OK; STALE for a miss that counts toward DOWN; DOWN for a failure that is DOWN at once."""
    reason: str = ""
    timed_out: bool = False
    content_type: str | None = None
    """The answer's Content-Type header (OpenMetrics pages are rewritten before mapping)."""
    arrow: bytes | None = None
    """An Arrow answer's body (Content-Type ARROW), kept as bytes; `text` is then None."""


def batches_as_they_land(
    loop: asyncio.AbstractEventLoop,
    fetch: Callable[[int], Awaitable[Fetched]],
    indices: Sequence[int],
    give_up_at: float,
) -> Iterator[list[tuple[int, Fetched]]]:
    """Fetch every endpoint of `indices` at once on `loop` (run from another thread); yield the pages,
    (index, Fetched) pairs, in batches as they land. Stops when all have landed or at `give_up_at`
    (time.monotonic()), when the fetches still running are cancelled: the caller sees who is missing.

    The loop makes the batches (BATCH_GAP_S, BATCH_WINDOW_S), so the calling thread wakes once per
    batch, not once per page.
    """
    landed: queue.SimpleQueue[list[tuple[int, Fetched]]] = queue.SimpleQueue()
    fetching = asyncio.run_coroutine_threadsafe(_fetch_in_batches(fetch, indices, landed), loop)
    # An empty batch after the last one says the fetching ended however it ended: a source closing
    # (ScrapeSource.close cancels its loop's tasks) ends this wait now, not at `give_up_at`, so no
    # poll thread outlives its source and holds the interpreter's exit.
    fetching.add_done_callback(lambda _: landed.put([]))
    waiting = len(indices)
    try:
        while waiting:
            try:
                pages = landed.get(timeout=max(give_up_at - time.monotonic(), 0.0))
            except queue.Empty:
                return
            if not pages:
                return
            waiting -= len(pages)
            yield pages
    finally:
        if waiting and loop.is_running():  # a closed source's loop is gone: nothing left to cancel
            fetching.cancel()


async def _fetch_in_batches(
    fetch: Callable[[int], Awaitable[Fetched]],
    indices: Sequence[int],
    landed: queue.SimpleQueue[list[tuple[int, Fetched]]],
) -> None:
    """Fetch `indices` at once; put the pages on `landed` a batch at a time (the last one as all land)."""
    loop = asyncio.get_running_loop()
    batch: list[tuple[int, Fetched]] = []
    first_at = 0.0
    flush: asyncio.TimerHandle | None = None

    def hand_over() -> None:
        nonlocal flush
        flush = None
        if batch:
            landed.put(batch.copy())
            batch.clear()

    async def one(i: int) -> None:
        nonlocal first_at, flush
        page = await fetch(i)
        now = loop.time()
        if not batch:
            first_at = now
        batch.append((i, page))
        if flush is not None:
            flush.cancel()
        flush = loop.call_at(min(now + BATCH_GAP_S, first_at + BATCH_WINDOW_S), hand_over)

    try:
        await asyncio.gather(*(one(i) for i in indices))
    finally:
        if flush is not None:
            flush.cancel()
        hand_over()


SCRAPE_HEADERS = {"Accept": ACCEPT, "Accept-Encoding": "gzip", "User-Agent": "rack-monitor"}
"""What every scrape request says (a tray's Accept is TRAY_ACCEPT)."""


def open_client(endpoints: int) -> ScrapeClient:
    """The HTTP client of a scrape source of `endpoints` endpoints (collectors.scrape_client: keep-alive,
    gzip but to a loopback host): one idle connection kept per endpoint, were they all on one host and
    port."""
    return ScrapeClient(
        SCRAPE_HEADERS, idle_per_origin=max(DEFAULT_IDLE_PER_ORIGIN, endpoints), gzip_on_loopback=False
    )


async def open_session(endpoints: int) -> aiohttp.ClientSession:
    """An aiohttp session asking as a scrape does, for `endpoints` endpoints (keep-alive, gzip).

    aiohttp is imported here, for the PromQL source alone: it is 24 MB resident, which a recorder or a
    live client scraping with ScrapeClient never needs.
    """
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max(100, 2 * endpoints), keepalive_timeout=60)
    return aiohttp.ClientSession(connector=connector, headers=SCRAPE_HEADERS, auto_decompress=True)


async def fetch_page(
    client: ScrapeClient | aiohttp.ClientSession,
    url: str,
    *,
    timeout_s: float,
    max_bytes: int,
    accept: str | None = None,
) -> Fetched:
    """GET one page within `timeout_s` and `max_bytes`; never raises for an endpoint's fault.

    `client`: the scrape source's ScrapeClient, or an aiohttp session (the PromQL source's). `accept`
    replaces the client's Accept header (ACCEPT); an answer in ARROW comes back as bytes.
    """
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            if isinstance(client, ScrapeClient):
                answer = await client.get(url, max_bytes=max_bytes, accept=accept)
                status, content_type, body = answer.status, answer.content_type, answer.body
            else:
                status, content_type, body = await _session_get(client, url, accept, max_bytes)
        if status != 200:
            return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, f"HTTP {status}")
        if content_type is not None and content_type.split(";")[0].strip().lower() == ARROW:
            latency = time.perf_counter() - start
            return Fetched(None, latency, EndpointState.OK, content_type=content_type, arrow=bytes(body))
        # Decoded here, so only the text travels on to the parser: the bytes are freed at once.
        text = body.decode("utf-8")
        return Fetched(text, time.perf_counter() - start, EndpointState.OK, content_type=content_type)
    except UnicodeDecodeError as err:
        reason = f"malformed page: not UTF-8 (byte {err.start})"
        return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, reason)
    except TimeoutError:
        reason = f"no answer within {timeout_s:g} s"
        return Fetched(None, time.perf_counter() - start, EndpointState.STALE, reason, timed_out=True)
    except PageTooBig:
        reason = f"page larger than {max_bytes / (1 << 20):g} MiB"
        return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, reason)
    except BadAnswer as err:
        return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, f"malformed answer: {err}")
    except ConnectError as err:
        return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, _os_reason(err.cause))
    except _session_errors("ClientConnectorError") as err:
        reason = _os_reason(err.os_error) if err.os_error is not None else "cannot connect"
        return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, reason)
    except (PageCut, *_session_errors("ServerDisconnectedError", "ClientPayloadError")):
        return Fetched(None, time.perf_counter() - start, EndpointState.STALE, "connection closed mid-page")
    except (ConnectionLost, *_session_errors("ClientOSError")) as err:
        # A reset or a page cut short happens to healthy servers too (a keep-alive connection
        # closed as it was reused): a miss, DOWN only if it repeats.
        reason = "connection reset" if err.errno == errno.ECONNRESET else f"connection failed: {err}"
        return Fetched(None, time.perf_counter() - start, EndpointState.STALE, reason)
    except (OSError, ValueError, *_session_errors("ClientError")) as err:
        reason = f"{type(err).__name__}: {err}".rstrip(": ")
        return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, reason)


async def _session_get(
    session: aiohttp.ClientSession, url: str, accept: str | None, max_bytes: int
) -> tuple[int, str | None, bytes | bytearray]:
    """(status, Content-Type, body) of a GET through an aiohttp session; the body only for a 200."""
    headers = {"Accept": accept} if accept is not None else None
    async with session.get(url, allow_redirects=False, headers=headers) as resp:
        if resp.status != 200:
            return resp.status, None, b""
        return 200, resp.headers.get("Content-Type"), await _read(resp, max_bytes)


async def _read(resp: aiohttp.ClientResponse, max_bytes: int) -> bytearray:
    """The body, decoded from gzip, refusing pages past max_bytes without reading them whole.

    One growing buffer rather than a list of chunks joined at the end: the join held the page twice.
    """
    length = resp.content_length
    if length is not None and length > max_bytes and "Content-Encoding" not in resp.headers:
        raise PageTooBig
    body = bytearray()
    async for chunk in resp.content.iter_any():
        if len(body) + len(chunk) > max_bytes:
            raise PageTooBig
        body += chunk
    return body


def _session_errors(*names: str) -> tuple[type[BaseException], ...]:
    """aiohttp's exception classes of these names, or none where aiohttp was never imported: then no
    session exists (open_session imports it) and none of its errors can be raised."""
    aiohttp = sys.modules.get("aiohttp")
    return tuple(getattr(aiohttp, name) for name in names) if aiohttp is not None else ()


def _os_reason(cause: OSError | None) -> str:
    """Why a connection could not be opened."""
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect: {cause.strerror or cause}" if cause is not None else "cannot connect"
