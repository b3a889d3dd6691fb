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
import logging
import queue
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
import pyarrow as pa
import pyarrow.compute as pc

from collectors.config import DEFAULT_DOWN_AFTER, DEFAULT_TIMEOUT_S, RackConfig, ServerTarget, TrayTarget
from collectors.mappings import (
    GpuPageMapper,
    MappingError,
    ServingRows,
    add_serving,
    detect_engine,
    serving_want,
)
from collectors.mappings.gpu import gpu_want
from collectors.page_budget import PageBudget, PageOverBudget
from collectors.poller import MAPPING_ALLOWANCE_S
from collectors.promtext import ExpositionError, ExpositionParser
from collectors.promtext_openmetrics import is_openmetrics, to_text_format
from collectors.scrape_http import DEFAULT_MAX_BYTES, Fetched, fetch_page, open_session
from collectors.series_counters import SeriesCounters
from collectors.stand_ins import stale_gpu_rows
from storage.frame import Frame, batch_from_rows, merge_frames
from storage.schemas import EndpointState, EventKind

log = logging.getLogger(__name__)

UNKNOWN_ENGINE = "unknown"
"""serving.engine of a server that never answered and has no engine in the config."""
LATE_TOLERANCE = 0.25
"""A timeout firing more than this fraction of itself (at least 0.1 s) past its time means the
collector's own loop was starved: the endpoint was not given its time, so the miss is not its fault."""
MAX_OVERLAPPING_POLLS = 12
"""Polls of one scrape source that may run at once (a timeout of up to 10 intervals, plus mapping)."""
DEFAULT_PAGE_BUDGET_S = 0.5
"""Seconds one page may take to parse (collectors.page_budget.PageBudget says why wall-clock time). The
rack's pages parse and map in under 1 ms each warm (bench/bench_scrape.py: ~60 ms of CPU for 90 pages)
and a few ms cold; 0.5 s is 100x a cold page, ~10x one on a host loaded 10 deep, and fits the poller's
MAPPING_ALLOWANCE_S, so a page cut at its budget still reaches its tick."""
MAP_ALLOWANCE_S = MAPPING_ALLOWANCE_S / 2
"""How long past its timeout a poll may still parse pages; the rest of the poller's allowance is its
margin for merging the frame. A page still parsing then is cut and counts as a miss."""
LARGE_PAGE_CHARS = 1 << 20
"""A page this large (~15x a tray agent's page of 4 GPUs, ~20x a vLLM server's) is parsed after the
tick's other pages are in: a slow page must not hold up the ones behind it in the poll thread."""
BATCH_GAP_S = 0.1
BATCH_WINDOW_S = 0.5
"""Pages are mapped in batches: a batch takes pages while each lands within BATCH_GAP_S of the last,
for at most BATCH_WINDOW_S after its first. Mapping each page the moment it landed had the poll thread
and the HTTP loop trading the GIL: +10-25 ms of CPU a tick in bench/bench_scrape.py. A healthy rack's
pages land in one burst of a few hundred ms; a hung endpoint does not hold a batch past its window."""
LOOP_GRACE_S = 5.0
"""How long past its timeout a poll waits for the source's own HTTP loop before writing its fetches off."""

Kind = Literal["tray", "server"]
T = TypeVar("T")


@dataclass
class _Tick:
    """What one poll gathers for its tick, endpoint by endpoint."""

    ts: int
    trays: dict[int, Frame] = field(default_factory=dict)
    """Each tray endpoint's rows (mapped, or stand-ins), by endpoint index: merged in config order."""
    serving: ServingRows = field(default_factory=ServingRows)
    events: list[dict[str, object]] = field(default_factory=list)
    outcomes: dict[int, Fetched] = field(default_factory=dict)
    """Each asked endpoint's outcome (pages dropped once mapped)."""


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
        page_budget_s: float = DEFAULT_PAGE_BUDGET_S,
    ) -> None:
        """Args:
        trays: tray exporters (agent or dcgm-exporter pages -> gpu, nvlink, events).
        servers: inference servers (pages -> serving, serving_hist).
        name: shown for the whole source (the rack's name).
        timeout_s: the most one endpoint may take per tick, connect to last byte.
        max_bytes: the largest page accepted.
        down_after: consecutive misses before an endpoint is DOWN.
        page_budget_s: the most one page may take to parse; a page that needs more is abandoned
            and its endpoint is DOWN (DEFAULT_PAGE_BUDGET_S says why this much).
        """
        if timeout_s <= 0:
            raise ValueError("the scrape timeout must be positive")
        if down_after < 1:
            raise ValueError("down_after must be at least 1")
        if page_budget_s <= 0:
            raise ValueError("the page budget must be positive")
        self.name = name
        self.page_budget_s = page_budget_s
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
        self._server_names = pa.array([ep.status.name for ep in self._endpoints if ep.server is not None])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"scrape-{name}", daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession = self._run(open_session(len(self._endpoints)), timeout=10)
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

    async def _fetch_into(
        self, indices: Sequence[int], landed: queue.SimpleQueue[tuple[int, Fetched]]
    ) -> None:
        """Fetch the endpoints at `indices` at once; each (index, Fetched) goes to `landed` as it lands."""

        async def one(i: int) -> None:
            landed.put((i, await self.fetch(self._endpoints[i].status.url)))

        await asyncio.gather(*(one(i) for i in indices))

    async def fetch(self, url: str) -> Fetched:
        """GET one page within the timeout and the byte limit; never raises for an endpoint's fault."""
        return await fetch_page(self._session, url, timeout_s=self.timeout_s, max_bytes=self.max_bytes)

    # -- the tick, in the caller's thread -----------------------------------------------------------

    def poll(self, ts_ms: int) -> Frame:
        """Scrape every endpoint not busy with an earlier tick (concurrently, each within the timeout).

        Each page is parsed and mapped as soon as it arrives (a large one once the others are in),
        within its own budget, and its endpoint is free for the next tick as soon as its page is
        done: a slow page costs its own endpoint's data, not the other endpoints' tick.
        """
        if self._closed:
            raise RuntimeError(f"scrape source {self.name} is closed")
        with self._lock:
            mine = [i for i in range(len(self._endpoints)) if i not in self._busy]
            self._busy.update(mine)
        tick = _Tick(ts_ms)
        try:
            self._take_pages(tick, mine)
            return self._frame(tick, mine)
        finally:
            with self._lock:
                self._busy.difference_update(mine)

    def _take_pages(self, tick: _Tick, mine: Sequence[int]) -> None:
        """Fetch `mine`, map each page as it lands, settle each endpoint whose outcome is final.

        Pages larger than LARGE_PAGE_CHARS wait until every fetch is in, so the rack's usual pages
        never queue behind one. A miss (STALE) is settled in _frame, once every fetch is in: whether
        it counts depends on how many endpoints missed with it (_collector_late).
        """
        started = time.monotonic()
        map_by = started + self.timeout_s + MAP_ALLOWANCE_S
        landed: queue.SimpleQueue[tuple[int, Fetched]] = queue.SimpleQueue()
        fetching = asyncio.run_coroutine_threadsafe(self._fetch_into(mine, landed), self._loop)
        large: list[tuple[int, Fetched]] = []
        waiting = len(mine)
        while waiting:
            left = started + self.timeout_s + LOOP_GRACE_S - time.monotonic()
            try:
                pages = [landed.get(timeout=max(left, 0.0))]
            except queue.Empty:
                break  # the source's own loop is stuck: the rest are misses (below)
            batch_by = time.monotonic() + BATCH_WINDOW_S
            while len(pages) < waiting:
                quiet_s = min(BATCH_GAP_S, batch_by - time.monotonic())
                try:
                    pages.append(landed.get(timeout=max(quiet_s, 0.0)))
                except queue.Empty:
                    break
            waiting -= len(pages)
            for i, got in pages:
                if got.text is not None and len(got.text) > LARGE_PAGE_CHARS:
                    large.append((i, got))
                else:
                    self._take_page(i, got, tick, map_by)
        if waiting:
            if not self._closed:  # a closed source's loop is gone: nothing left there to cancel
                fetching.cancel()
            reason = f"no answer within {self.timeout_s:g} s"
            elapsed = time.monotonic() - started
            taken = {i for i, _ in large} | set(tick.outcomes)
            for i in mine:
                if i not in taken:
                    tick.outcomes[i] = Fetched(None, elapsed, EndpointState.STALE, reason, timed_out=True)
        large.sort(key=lambda page: len(page[1].text or ""))
        while large:
            self._take_page(*large.pop(0), tick, map_by)  # popped: its text is freed once mapped

    def _take_page(self, i: int, got: Fetched, tick: _Tick, map_by: float) -> None:
        """Read endpoint i's page; settle the endpoint now unless its outcome is a miss."""
        got = self._read_page(i, got, tick, map_by)
        tick.outcomes[i] = got
        if got.state != EndpointState.STALE:
            self._settle(i, got, tick, counted=True)

    def _read_page(self, i: int, got: Fetched, tick: _Tick, map_by: float) -> Fetched:
        """Parse and map one fetched page within its budget; the outcome, without the page.

        Parsing stops when the page has used its budget, or at the tick's `map_by`. Mapping runs
        to its end once parsing is done: it moves the endpoint's counter state, which must move for a
        whole page or not at all. A page that fails takes its parser's caches with it.
        """
        if got.text is None:
            return got
        ep = self._endpoints[i]
        budget = PageBudget(self.page_budget_s, map_by)
        try:
            text = got.text
            if is_openmetrics(text, got.content_type):
                text = to_text_format(text)
            if ep.mapper is not None:
                families = ep.parser.parse(text, gpu_want, give_up=budget.spent)
                part = ep.mapper.map(families, tick.ts)
                if "gpu" in part.batches:
                    ep.last_gpu = part.batches["gpu"]
                tick.trays[i] = part
            else:
                ep.status.engine = self._map_server(ep, text, tick.serving, budget)
            return Fetched(None, got.latency_s, EndpointState.OK)
        except PageOverBudget as over:
            if budget.own_spent():
                reason = f"page not parsed within its {self.page_budget_s:g} s budget ({over})"
                failed = Fetched(None, got.latency_s, EndpointState.DOWN, reason)
            else:  # the tick's time ran out, not the page's: a miss
                reason = f"page not parsed by the tick's deadline ({over})"
                failed = Fetched(None, got.latency_s, EndpointState.STALE, reason)
        except (ExpositionError, MappingError) as err:
            failed = Fetched(None, got.latency_s, EndpointState.DOWN, f"malformed page: {err}")
        # The series heads the bad page left in the parser's caches go with it (a server's parser
        # shared its caches with the other servers; from now on this one keeps its own).
        ep.parser = ExpositionParser()
        return failed

    def _settle(self, i: int, got: Fetched, tick: _Tick, *, counted: bool) -> None:
        """Judge endpoint i on its outcome, stand in for its rows if it has none, free it."""
        ep = self._endpoints[i]
        shown = self._update(ep, tick.ts, got, tick.events, counted=counted)
        if shown != EndpointState.OK:
            self._stand_in(i, tick, shown)
        with self._lock:
            self._busy.discard(i)

    def _frame(self, tick: _Tick, mine: Sequence[int]) -> Frame:
        """Settle this tick's misses, stand in for the endpoints still busy, merge the rows."""
        late_by = self._collector_late(tick.outcomes)
        for i, got in tick.outcomes.items():
            if got.state == EndpointState.STALE:
                self._settle(i, got, tick, counted=late_by is None)
        asked = set(mine)
        for i in range(len(self._endpoints)):
            if i not in asked:  # still answering an earlier tick: no data for this one
                self._stand_in(i, tick, EndpointState.STALE)
        if late_by is not None:
            missed = sum(got.state == EndpointState.STALE for got in tick.outcomes.values())
            stamp = time.strftime("%H:%M:%S", time.gmtime(tick.ts / 1000))
            detail = (
                f"collector late by {late_by:.1f} s: {missed} of {len(tick.outcomes)} endpoints "
                f"missed tick {stamp}"
            )
            log.warning("%s: %s", self.name, detail)
            tick.events.append(_event(tick.ts, EventKind.COLLECTOR_LATE, self.name, detail))
        parts = [tick.trays[i] for i in sorted(tick.trays)]
        parts.append(self._in_config_order(tick.serving.frame(tick.ts)))
        if tick.events:
            parts.append(Frame(tick.ts, {"events": batch_from_rows("events", tick.events)}))
        return merge_frames(tick.ts, parts)

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

    def _in_config_order(self, frame: Frame) -> Frame:
        """The serving rows in the config's server order (pages are mapped in the order they land)."""
        batches = {}
        for table, batch in frame.batches.items():
            rank = pc.index_in(batch.column("endpoint"), value_set=self._server_names)
            batches[table] = batch.take(pc.sort_indices(rank))  # stable: a server's rows keep their order
        return Frame(frame.ts_ms, batches)

    def _stand_in(self, i: int, tick: _Tick, state: EndpointState) -> None:
        """Rows for an endpoint without a good page this tick: its tray's GPUs STALE, or its serving row."""
        ep = self._endpoints[i]
        if ep.mapper is not None:
            stale = stale_gpu_rows(ep.last_gpu, tick.ts)
            if stale is not None:
                tick.trays[i] = Frame(tick.ts, {"gpu": stale})
            return
        tick.serving.serving.add(
            {
                "endpoint": ep.status.name,
                "engine": ep.status.engine or UNKNOWN_ENGINE,
                "gpus": ep.gpus_text,
                "state": int(state),
            }
        )

    def _map_server(self, ep: _Endpoint, text: str, rows: ServingRows, budget: PageBudget) -> str:
        prefix = ep.server.metrics_prefix if ep.server is not None else None
        engine = ep.status.engine or ("dynamo" if prefix is not None else detect_engine(text))
        if engine is None:
            raise MappingError(
                "no vLLM, SGLang, TensorRT-LLM, Triton or Dynamo metrics on the page (a Dynamo frontend "
                "started with DYN_METRICS_PREFIX needs metrics_prefix in its [[server]] entry)"
            )
        families = ep.parser.parse(text, serving_want(engine, prefix), give_up=budget.spent)
        engine = add_serving(
            families, ep.status.name, rows, engine=engine, series=ep.series, metrics_prefix=prefix
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


def _event(ts: int, kind: str, source: str, detail: str) -> dict[str, object]:
    return {"ts": ts, "kind": kind, "source": source, "detail": detail}
