"""The scrape source: tray agents, dcgm-exporters and inference servers over HTTP, one Frame per tick.

All HTTP runs on an asyncio loop in the source's own thread (one aiohttp ClientSession: keep-alive
connections, gzip, a bounded read per page). `poll(ts_ms)` starts one request per endpoint, waits at
most the per-endpoint timeout, then maps what arrived in the caller's (the poller's) thread. A slow,
hanging, dead or malformed endpoint only affects its own rows: a tray's GPUs come back STALE, a
server's serving row carries EndpointState.STALE (no answer in time) or DOWN (refused, HTTP error,
malformed or oversized page), and an endpoint_down / endpoint_up event marks each change.
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

from collectors.config import RackConfig, ServerTarget, TrayTarget
from collectors.mappings import GpuPageMapper, MappingError, ServingRows, add_serving, detect_engine
from collectors.promtext import ExpositionError, ExpositionParser
from collectors.series_counters import SeriesCounters
from storage.frame import Frame, batch_from_rows, merge_frames
from storage.schemas import EndpointState, EventKind, GpuState

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 << 20
"""The largest page read (after gzip decoding); a bigger page is an error for its endpoint."""
ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
"""Plain text 0.0.4 only: OpenMetrics negotiation renames `vllm:` samples (serving.md section 0)."""
UNKNOWN_ENGINE = "unknown"
"""serving.engine of a server that never answered and has no engine in the config."""

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
    reason: str = ""


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
    """

    name: str
    url: str
    kind: Kind
    state: EndpointState = EndpointState.OK
    latency_s: float | None = None
    reason: str = ""
    engine: str | None = None
    last_ok_ms: int | None = None
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

    def __init__(
        self,
        trays: Sequence[TrayTarget] = (),
        servers: Sequence[ServerTarget] = (),
        *,
        name: str = "rack",
        timeout_s: float = 0.5,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        """Args:
        trays: tray exporters (agent or dcgm-exporter pages -> gpu, nvlink, events).
        servers: inference servers (pages -> serving, serving_hist).
        name: shown for the whole source (the rack's name).
        timeout_s: the most one endpoint may take per tick, connect to last byte.
        max_bytes: the largest page accepted.
        """
        if timeout_s <= 0:
            raise ValueError("the scrape timeout must be positive")
        self.name = name
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
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
        """The source of a rack config (timeout_s overrides the config's)."""
        return cls(
            config.trays,
            config.servers,
            name=config.name,
            timeout_s=timeout_s if timeout_s is not None else config.timeout_s,
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

    async def _fetch_all(self) -> list[Fetched]:
        return await asyncio.gather(*(self.fetch(ep.status.url) for ep in self._endpoints))

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
            return Fetched(body, time.perf_counter() - start, EndpointState.OK)
        except TimeoutError:
            reason = f"no answer within {self.timeout_s:g} s"
            return Fetched(None, time.perf_counter() - start, EndpointState.STALE, reason)
        except _PageTooBig:
            reason = f"page larger than {self.max_bytes / (1 << 20):g} MiB"
            return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, reason)
        except aiohttp.ClientConnectorError as err:
            return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, _connect_reason(err))
        except aiohttp.ClientOSError as err:
            reason = "connection reset" if err.errno == errno.ECONNRESET else f"connection failed: {err}"
            return Fetched(None, time.perf_counter() - start, EndpointState.DOWN, reason)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            return Fetched(
                None, time.perf_counter() - start, EndpointState.DOWN, "connection closed mid-page"
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
        """Scrape every endpoint once (concurrently, each within the timeout) and map the pages."""
        if self._closed:
            raise RuntimeError(f"scrape source {self.name} is closed")
        fetched = self._run(self._fetch_all(), timeout=self.timeout_s + 5.0)
        parts: list[Frame] = []
        serving = ServingRows()
        events: list[dict[str, object]] = []
        for ep, got in zip(self._endpoints, fetched, strict=True):
            state, reason = got.state, got.reason
            if got.body is not None:
                try:
                    if ep.mapper is not None:
                        part = ep.mapper.map(got.body, ts_ms)
                        if "gpu" in part.batches:
                            ep.last_gpu = part.batches["gpu"]
                        parts.append(part)
                    else:
                        ep.status.engine = self._map_server(ep, got.body, serving)
                except (ExpositionError, MappingError, UnicodeDecodeError) as err:
                    state, reason = EndpointState.DOWN, f"malformed page: {err}"
            self._update(ep, ts_ms, state, reason or ep.warning, got.latency_s, events)
            if state != EndpointState.OK:
                if ep.mapper is not None:
                    stale = _stale_gpu_rows(ep.last_gpu, ts_ms)
                    if stale is not None:
                        parts.append(Frame(ts_ms, {"gpu": stale}))
                else:
                    serving.serving.add(
                        {
                            "endpoint": ep.status.name,
                            "engine": ep.status.engine or UNKNOWN_ENGINE,
                            "gpus": ep.gpus_text,
                            "state": int(state),
                        }
                    )
        parts.append(serving.frame(ts_ms))
        if events:
            parts.append(Frame(ts_ms, {"events": batch_from_rows("events", events)}))
        return merge_frames(ts_ms, parts)

    def _map_server(self, ep: _Endpoint, body: bytes, rows: ServingRows) -> str:
        text = body.decode("utf-8")
        engine = ep.status.engine or detect_engine(text)
        if engine is None:
            raise MappingError("no vLLM, SGLang, TensorRT-LLM, Triton or Dynamo metrics on the page")
        engine = add_serving(text, ep.status.name, rows, engine=engine, parser=ep.parser, series=ep.series)
        rows.serving.columns["gpus"][-1] = ep.gpus_text
        return engine

    @staticmethod
    def _update(
        ep: _Endpoint,
        ts_ms: int,
        state: EndpointState,
        reason: str,
        latency_s: float,
        events: list[dict[str, object]],
    ) -> None:
        """Record the endpoint's state; an event when it stops answering well or comes back."""
        status = ep.status
        was_ok = status.state == EndpointState.OK
        if state == EndpointState.OK:
            if status.seen and not was_ok:
                events.append(
                    _event(ts_ms, EventKind.ENDPOINT_UP, status.name, f"{status.name} answering again")
                )
            status.last_ok_ms = ts_ms
            status.latency_s = latency_s
        else:
            if was_ok or not status.seen:
                log.warning("%s (%s): %s", status.name, status.url, reason)
                events.append(_event(ts_ms, EventKind.ENDPOINT_DOWN, status.name, f"{status.name}: {reason}"))
            status.latency_s = latency_s if state == EndpointState.DOWN else None
        status.state = state
        status.reason = reason
        status.seen = True

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


_IDENTITY = ("gpu", "uuid", "tray")


def _stale_gpu_rows(last: pa.RecordBatch | None, ts_ms: int) -> pa.RecordBatch | None:
    """The GPUs a tray reported last, STALE with null metrics (a LOST GPU stays LOST)."""
    if last is None or not last.num_rows:
        return None
    n = last.num_rows
    states = last.column("state").to_pylist()
    arrays = []
    for column in last.schema:
        if column.name == "ts":
            arrays.append(pa.array([ts_ms] * n, type=column.type))
        elif column.name == "state":
            kept = [s if s == GpuState.LOST else int(GpuState.STALE) for s in states]
            arrays.append(pa.array(kept, type=column.type))
        elif column.name in _IDENTITY:
            arrays.append(last.column(column.name))
        else:
            arrays.append(pa.nulls(n, column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=last.schema)
