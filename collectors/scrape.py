"""The scrape source: tray agents, dcgm-exporters and inference servers over HTTP, one Frame per tick.

All HTTP runs on an asyncio loop in the source's own thread (one aiohttp ClientSession: keep-alive
connections, gzip, a bounded read per page). `poll(ts_ms)` starts one request per endpoint, waits at
most the per-endpoint timeout, then maps what arrived in the caller's (the poller's) thread. A slow,
hanging, dead or malformed endpoint only affects its own rows: a tray's GPUs come back STALE, a
server's serving row carries its EndpointState.

Health: a miss (no answer in time, a connection reset) makes an endpoint STALE; `down_after`
consecutive misses, or at once a refused connection, an HTTP error or a malformed or oversized page,
make it DOWN. A server that answers OpenMetrics despite our Accept header is read through
collectors.promtext_openmetrics (or DOWN with the reason when that cannot read it), never taken as
an empty text page. endpoint_down / endpoint_up events mark only the DOWN transitions and name the
endpoint. When the collector itself is late (its timeouts fire well past their time because its thread
was starved, or most endpoints miss the same tick), the misses count against nobody and one
collector_late event says so. Polls may overlap (a timeout may exceed the poll interval): an
endpoint still answering an earlier tick is not asked again and stands in as STALE for the new one.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
import pyarrow as pa

from collectors.config import DEFAULT_DOWN_AFTER, DEFAULT_TIMEOUT_S, RackConfig, ServerTarget, TrayTarget
from collectors.mappings import GpuPageMapper, MappingError, ServingRows, add_serving, detect_engine
from collectors.promtext import ExpositionError, ExpositionParser
from collectors.promtext_openmetrics import is_openmetrics, to_text_format
from collectors.series_counters import SeriesCounters
from collectors.stand_ins import stale_gpu_rows
from storage.frame import Frame, batch_from_rows, merge_frames
from storage.schemas import EndpointState, EventKind

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 << 20
"""The largest page read (after gzip decoding); a bigger page is an error for its endpoint."""
ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
"""Plain text 0.0.4 only: OpenMetrics negotiation renames `vllm:` samples (serving.md section 0)."""
UNKNOWN_ENGINE = "unknown"
"""serving.engine of a server that never answered and has no engine in the config."""
LATE_TOLERANCE = 0.25
"""A timeout firing more than this fraction of itself (at least 0.1 s) past its time means the
collector's own loop was starved: the endpoint was not given its time, so the miss is not its fault."""
MAX_OVERLAPPING_POLLS = 12
"""Polls of one scrape source that may run at once (a timeout of up to 10 intervals, plus mapping)."""

Kind = Literal["tray", "server"]
T = TypeVar("T")


class _PageTooBig(Exception):
    """The page passed the byte limit."""


@dataclass(frozen=True)
class Fetched:
    """One HTTP fetch: the body, or why there is none."""

    body: bytes | None
    latency_s: float
    state: EndpointState
    """OK; STALE for a miss that counts toward DOWN; DOWN for a failure that is DOWN at once."""
    reason: str = ""
    timed_out: bool = False
    content_type: str | None = None
    """The answer's Content-Type header (OpenMetrics pages are rewritten before mapping)."""


@dataclass
class EndpointStatus:
    """What one endpoint did on the last tick (what `monitor doctor` prints).

    Attributes:
        name: tray host or server name.
        url: its /metrics URL.
        kind: "tray" or "server".
        state: OK, STALE (no answer in time) or DOWN (refused, error, malformed page).
        latency_s: seconds to the full page on the last tick (None without one).
        reason: why it is not OK ("" when it is).
        engine: the server's engine (configured or detected), None for trays.
        last_ok_ms: tick of its last good page.
        misses: consecutive scrapes without a good page (DOWN at `down_after`).
    """

    name: str
    url: str
    kind: Kind
    state: EndpointState = EndpointState.OK
    latency_s: float | None = None
    reason: str = ""
    engine: str | None = None
    last_ok_ms: int | None = None
    misses: int = 0
    seen: bool = False
    """Whether any tick has looked at it yet."""


@dataclass
class _Endpoint:
    status: EndpointStatus
    tray: TrayTarget | None = None
    server: ServerTarget | None = None
    mapper: GpuPageMapper | None = None
    parser: ExpositionParser = field(default_factory=ExpositionParser, repr=False)
    """A server's own page parser (a tray's mapper has one): its pages share their shape."""
    series: SeriesCounters = field(default_factory=SeriesCounters, repr=False)
    """A server's per-series counter state across its pages (collectors.series_counters)."""
    last_gpu: pa.RecordBatch | None = field(default=None, repr=False)

    @property
    def warning(self) -> str:
        """What the last mapped page lacked or repeated ("" if nothing): the status reason of an OK page."""
        if self.mapper is not None:
            dups = self.mapper.duplicates
            return f"{dups} duplicate samples dropped (first kept)" if dups else ""
        return self.series.warning

    @property
    def gpus_text(self) -> str | None:
        """serving.gpus: the server's rack GPUs as "8,9,10,11" (None when the config names none)."""
        if self.server is None or not self.server.gpus:
            return None
        return ",".join(map(str, self.server.gpus))


class ScrapeSource:
    """A Source over a rack's exporters and inference servers (collectors.source.Source)."""

    max_concurrent_polls = MAX_OVERLAPPING_POLLS
    """The poller may poll again while earlier polls wait on slow endpoints (see the module doc)."""

    def __init__(
        self,
        trays: Sequence[TrayTarget] = (),
        servers: Sequence[ServerTarget] = (),
        *,
        name: str = "rack",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        down_after: int = DEFAULT_DOWN_AFTER,
    ) -> None:
        """Args:
        trays: tray exporters (agent or dcgm-exporter pages -> gpu, nvlink, events).
        servers: inference servers (pages -> serving, serving_hist).
        name: shown for the whole source (the rack's name).
        timeout_s: the most one endpoint may take per tick, connect to last byte.
        max_bytes: the largest page accepted.
        down_after: consecutive misses before an endpoint is DOWN.
        """
        if timeout_s <= 0:
            raise ValueError("the scrape timeout must be positive")
        if down_after < 1:
            raise ValueError("down_after must be at least 1")
        self.name = name
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.down_after = down_after
        self._busy: set[int] = set()
        """Endpoints whose fetch (and mapping) for an earlier tick is still running."""
        self._mass_misses = 0
        """Consecutive polls in which most endpoints missed (a dead network, or a starved collector)."""
        self._lock = threading.Lock()
        self._endpoints: list[_Endpoint] = []
        for tray in trays:
            status = EndpointStatus(tray.host, tray.url, "tray")
            self._endpoints.append(
                _Endpoint(status, tray=tray, mapper=GpuPageMapper(tray.host, tray=tray.tray))
            )
        caches = ExpositionParser()
        for server in servers:
            status = EndpointStatus(server.name, server.url, "server", engine=server.engine)
            self._endpoints.append(_Endpoint(status, server=server, parser=caches.sibling()))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"scrape-{name}", daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession = self._run(self._open_session(), timeout=10)
        self._closed = False

    @classmethod
    def from_config(cls, config: RackConfig, *, timeout_s: float | None = None) -> ScrapeSource:
        """The source of a rack config (timeout_s overrides the config's, else its default at 1 Hz)."""
        return cls(
            config.trays,
            config.servers,
            name=config.name,
            timeout_s=timeout_s if timeout_s is not None else config.timeout_for(1.0),
            down_after=config.down_after,
        )

    # -- HTTP, on the source's loop --------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=max(100, 2 * len(self._endpoints)), keepalive_timeout=60)
        return aiohttp.ClientSession(
            connector=connector,
            headers={"Accept": ACCEPT, "Accept-Encoding": "gzip", "User-Agent": "rack-monitor"},
            auto_decompress=True,
        )

    async def _fetch_some(self, indices: Sequence[int]) -> list[Fetched]:
        return await asyncio.gather(*(self.fetch(self._endpoints[i].status.url) for i in indices))

    async def fetch(self, url: str) -> Fetched:
        """GET one page within the timeout and the byte limit; never raises for an endpoint's fault."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._session.get(url, allow_redirects=False) as resp:
                    if resp.status != 200:
                        return Fetched(
                            None, time.perf_counter() - start, EndpointState.DOWN, f"HTTP {resp.status}"
                        )
                    body = await self._read(resp)
                    content_type = resp.headers.get("Content-Type")
            return Fetched(body, time.perf_counter() - start, EndpointState.OK, content_type=content_type)
        except TimeoutError:
            reason = f"no answer within {self.timeout_s:g} s"
            return Fetched(None, time.perf_counter() - start, EndpointState.STALE, reason, timed_out=True)
        except _PageTooBig:
            reason = f"page larger than {self.max_bytes / (1 << 20):g} MiB"
            return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, reason)
        except aiohttp.ClientConnectorError as err:
            return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, _connect_reason(err))
        except aiohttp.ClientOSError as err:
            # A reset or a page cut short happens to healthy servers too (a keep-alive connection
            # closed as it was reused): a miss, DOWN only if it repeats.
            reason = "connection reset" if err.errno == errno.ECONNRESET else f"connection failed: {err}"
            return Fetched(None, time.perf_counter() - start, EndpointState.STALE, reason)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            return Fetched(
                None, time.perf_counter() - start, EndpointState.STALE, "connection closed mid-page"
            )
        except (aiohttp.ClientError, OSError, ValueError) as err:
            reason = f"{type(err).__name__}: {err}".rstrip(": ")
            return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, reason)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, decoded from gzip, refusing pages past max_bytes without reading them whole."""
        length = resp.content_length
        if length is not None and length > self.max_bytes and "Content-Encoding" not in resp.headers:
            raise _PageTooBig
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > self.max_bytes:
                raise _PageTooBig
            chunks.append(chunk)
        return b"".join(chunks)

    # -- the tick, in the caller's thread -----------------------------------------------------------

    def poll(self, ts_ms: int) -> Frame:
        """Scrape every endpoint not busy with an earlier tick (concurrently, each within the timeout)."""
        if self._closed:
            raise RuntimeError(f"scrape source {self.name} is closed")
        with self._lock:
            mine = [i for i in range(len(self._endpoints)) if i not in self._busy]
            self._busy.update(mine)
        try:
            fetched = self._run(self._fetch_some(mine), timeout=self.timeout_s + 5.0) if mine else []
            return self._frame(ts_ms, dict(zip(mine, fetched, strict=True)))
        finally:
            with self._lock:
                self._busy.difference_update(mine)

    def _frame(self, ts_ms: int, fetched: dict[int, Fetched]) -> Frame:
        """Map the pages fetched for tick `ts_ms`, judge each endpoint, stand in for the rest."""
        parts: list[Frame] = []
        serving = ServingRows()
        events: list[dict[str, object]] = []
        outcomes: dict[int, Fetched] = {}
        for i, got in fetched.items():
            ep = self._endpoints[i]
            if got.body is not None:
                try:
                    body: bytes | str = got.body
                    if is_openmetrics(body, got.content_type):
                        body = to_text_format(body)
                    if ep.mapper is not None:
                        part = ep.mapper.map(body, ts_ms)
                        if "gpu" in part.batches:
                            ep.last_gpu = part.batches["gpu"]
                        parts.append(part)
                    else:
                        ep.status.engine = self._map_server(ep, body, serving)
                except (ExpositionError, MappingError, UnicodeDecodeError) as err:
                    got = Fetched(None, got.latency_s, EndpointState.DOWN, f"malformed page: {err}")
            outcomes[i] = got
        late_by = self._collector_late(outcomes)
        for i, got in outcomes.items():
            shown = self._update(self._endpoints[i], ts_ms, got, events, counted=late_by is None)
            if shown != EndpointState.OK:
                self._stand_in(self._endpoints[i], ts_ms, shown, parts, serving)
        for i, ep in enumerate(self._endpoints):
            if i not in fetched:  # still answering an earlier tick: no data for this one
                self._stand_in(ep, ts_ms, EndpointState.STALE, parts, serving)
        if late_by is not None:
            missed = sum(got.state == EndpointState.STALE for got in outcomes.values())
            stamp = time.strftime("%H:%M:%S", time.gmtime(ts_ms / 1000))
            detail = (
                f"collector late by {late_by:.1f} s: {missed} of {len(outcomes)} endpoints "
                f"missed tick {stamp}"
            )
            log.warning("%s: %s", self.name, detail)
            events.append(_event(ts_ms, EventKind.COLLECTOR_LATE, self.name, detail))
        parts.append(serving.frame(ts_ms))
        if events:
            parts.append(Frame(ts_ms, {"events": batch_from_rows("events", events)}))
        return merge_frames(ts_ms, parts)

    def _collector_late(self, outcomes: dict[int, Fetched]) -> float | None:
        """How late the collector was this tick (seconds), or None when the misses are the endpoints'.

        Late when a timeout fired well past its time (this loop was starved, so the endpoint was not
        given its time), or when most endpoints missed at once, for at most `down_after` polls in a
        row: past that the network or the rack is really gone and the misses count.
        """
        missed = [got for got in outcomes.values() if got.state == EndpointState.STALE]
        overshoot = max((got.latency_s - self.timeout_s for got in missed if got.timed_out), default=0.0)
        mass = len(outcomes) >= 2 and 2 * len(missed) > len(outcomes)
        with self._lock:
            self._mass_misses = self._mass_misses + 1 if mass else 0
            streak = self._mass_misses
        starved = overshoot > max(0.1, LATE_TOLERANCE * self.timeout_s)
        if starved or (mass and streak <= self.down_after):
            return max(overshoot, 0.0)
        return None

    def _stand_in(
        self, ep: _Endpoint, ts_ms: int, state: EndpointState, parts: list[Frame], serving: ServingRows
    ) -> None:
        """Rows for an endpoint without a good page this tick: its tray's GPUs STALE, or its serving row."""
        if ep.mapper is not None:
            stale = stale_gpu_rows(ep.last_gpu, ts_ms)
            if stale is not None:
                parts.append(Frame(ts_ms, {"gpu": stale}))
            return
        serving.serving.add(
            {
                "endpoint": ep.status.name,
                "engine": ep.status.engine or UNKNOWN_ENGINE,
                "gpus": ep.gpus_text,
                "state": int(state),
            }
        )

    def _map_server(self, ep: _Endpoint, body: bytes | str, rows: ServingRows) -> str:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        prefix = ep.server.metrics_prefix if ep.server is not None else None
        engine = ep.status.engine or ("dynamo" if prefix is not None else detect_engine(text))
        if engine is None:
            raise MappingError(
                "no vLLM, SGLang, TensorRT-LLM, Triton or Dynamo metrics on the page (a Dynamo frontend "
                "started with DYN_METRICS_PREFIX needs metrics_prefix in its [[server]] entry)"
            )
        engine = add_serving(
            text,
            ep.status.name,
            rows,
            engine=engine,
            parser=ep.parser,
            series=ep.series,
            metrics_prefix=prefix,
        )
        rows.serving.columns["gpus"][-1] = ep.gpus_text
        return engine

    def _update(
        self, ep: _Endpoint, ts_ms: int, got: Fetched, events: list[dict[str, object]], *, counted: bool
    ) -> EndpointState:
        """Judge the endpoint on this tick's fetch; an event only when it goes DOWN or comes back.

        A miss (got.state STALE) makes it STALE, and DOWN at `down_after` in a row; a failure
        (got.state DOWN) makes it DOWN at once. Misses not `counted` (the collector was late) leave
        the count alone. Returns the state its rows show for this tick.
        """
        status = ep.status
        if got.state == EndpointState.OK:
            if status.state == EndpointState.DOWN and status.seen:
                detail = f"{status.name} answering again after {status.misses} failed scrapes"
                events.append(_event(ts_ms, EventKind.ENDPOINT_UP, status.name, detail))
            # an answering endpoint may still carry a warning (NaN series, repeated samples)
            status.state, status.misses, status.reason = EndpointState.OK, 0, ep.warning
            status.last_ok_ms = ts_ms
            status.latency_s = got.latency_s
            status.seen = True
            return EndpointState.OK
        if counted or got.state == EndpointState.DOWN:
            status.misses += 1
        down = got.state == EndpointState.DOWN or status.misses >= self.down_after
        if down and status.state != EndpointState.DOWN:
            why = (
                got.reason
                if got.state == EndpointState.DOWN
                else f"{got.reason} ({status.misses} scrapes in a row)"
            )
            log.warning("%s (%s) down: %s", status.name, status.url, why)
            events.append(_event(ts_ms, EventKind.ENDPOINT_DOWN, status.name, f"{status.name}: {why}"))
            status.state = EndpointState.DOWN
        elif status.state != EndpointState.DOWN:
            status.state = EndpointState.STALE
        status.latency_s = got.latency_s if got.state == EndpointState.DOWN else None
        status.reason = got.reason
        status.seen = True
        return status.state

    def statuses(self) -> list[EndpointStatus]:
        """Every endpoint's status after the last tick, trays first, in config order."""
        return [ep.status for ep in self._endpoints]

    def close(self) -> None:
        """Close the HTTP session and stop the loop thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._session.close(), timeout=5)
        except Exception as err:  # closing is best effort: the loop is stopped either way
            log.warning("closing the scrape session: %s", err)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


def _connect_reason(err: aiohttp.ClientConnectorError) -> str:
    cause = err.os_error
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect: {cause.strerror or cause}" if cause is not None else "cannot connect"


def _event(ts: int, kind: str, source: str, detail: str) -> dict[str, object]:
    return {"ts": ts, "kind": kind, "source": source, "detail": detail}
