"""The scrape source: tray agents, dcgm-exporters and inference servers over HTTP, one Frame per tick.

All HTTP runs on an asyncio loop in the source's own thread (one ScrapeClient: keep-alive connections,
gzip, a bounded read per page; collectors.scrape_client, collectors.scrape_http). `poll(ts_ms)` starts
one request per endpoint and parses and maps the pages in the caller's (the poller's) thread as they
land, each within its own time budget (collectors.scrape_endpoint); an endpoint is free for the next
tick as soon as its page is done. A slow, hanging, dead, malformed or too costly endpoint only affects
its own rows: a tray's GPUs come back STALE, a server's serving row carries its EndpointState.

Health: a miss (no answer in time, a connection reset) makes an endpoint STALE; `down_after`
consecutive misses, or at once a refused connection, an HTTP error, or a malformed, oversized or
over-budget page, make it DOWN. A server that answers OpenMetrics despite our Accept header is read
through collectors.promtext_openmetrics (or DOWN with the reason when that cannot read it), never taken
as an empty text page. endpoint_down / endpoint_up events mark only the DOWN transitions and name the
endpoint. When the collector itself is late (its timeouts fire well past their time because its thread
was starved, or most endpoints miss the same tick), the misses count against nobody and one
collector_late event says so. Polls may overlap (a timeout may exceed the poll interval): an
endpoint still answering an earlier tick is not asked again and stands in as STALE for the new one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from collectors.config import DEFAULT_DOWN_AFTER, DEFAULT_TIMEOUT_S, RackConfig, ServerTarget, TrayTarget
from collectors.mappings import GpuPageMapper, ServingRows
from collectors.page_budget import PageBudget
from collectors.poller import MAPPING_ALLOWANCE_S
from collectors.promtext import ExpositionParser
from collectors.scrape_endpoint import DEFAULT_PAGE_BUDGET_S, Endpoint, EndpointStatus, judge, read_page
from collectors.scrape_http import (
    DEFAULT_MAX_BYTES,
    TRAY_ACCEPT,
    Fetched,
    batches_as_they_land,
    fetch_page,
    open_client,
)
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
MAP_ALLOWANCE_S = MAPPING_ALLOWANCE_S / 2
"""How long past its timeout a poll may still parse pages; the rest of the poller's allowance is its
margin for merging the frame. A page still parsing then is cut and counts as a miss."""
LARGE_PAGE_CHARS = 1 << 20
"""A page this large (~15x a tray agent's page of 4 GPUs, ~20x a vLLM server's) is parsed after the
tick's other pages are in: a slow page must not hold up the ones behind it in the poll thread."""
LOOP_GRACE_S = 5.0
"""How long past its timeout a poll waits for the source's own HTTP loop before writing its fetches off."""

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
        tray_arrow: bool = True,
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
        tray_arrow: ask trays for the agent's Arrow stream first (TRAY_ACCEPT), text as the fallback;
            False asks them for text only, as any other endpoint.
        """
        if timeout_s <= 0:
            raise ValueError("the scrape timeout must be positive")
        if down_after < 1:
            raise ValueError("down_after must be at least 1")
        if page_budget_s <= 0:
            raise ValueError("the page budget must be positive")
        self.name = name
        self.page_budget_s = page_budget_s
        self.tray_arrow = tray_arrow
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.down_after = down_after
        self._busy: set[int] = set()
        """Endpoints whose fetch (and mapping) for an earlier tick is still running."""
        self._mass_misses = 0
        """Consecutive polls in which most endpoints missed (a dead network, or a starved collector)."""
        self._lock = threading.Lock()
        self._endpoints: list[Endpoint] = []
        for tray in trays:
            status = EndpointStatus(tray.host, tray.url, "tray")
            self._endpoints.append(
                Endpoint(status, tray=tray, mapper=GpuPageMapper(tray.host, tray=tray.tray))
            )
        caches = ExpositionParser()
        for server in servers:
            status = EndpointStatus(server.name, server.url, "server", engine=server.engine)
            self._endpoints.append(Endpoint(status, server=server, parser=caches.sibling()))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"scrape-{name}", daemon=True)
        self._thread.start()
        self._client = open_client(len(self._endpoints))
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

    async def _fetch_endpoint(self, i: int) -> Fetched:
        ep = self._endpoints[i]
        return await self.fetch(
            ep.status.url, TRAY_ACCEPT if ep.mapper is not None and self.tray_arrow else None
        )

    async def fetch(self, url: str, accept: str | None = None) -> Fetched:
        """GET one page within the timeout and the byte limit; never raises for an endpoint's fault.

        `accept` replaces the session's Accept header (a tray's asks for the agent's Arrow stream first).
        """
        return await fetch_page(
            self._client, url, timeout_s=self.timeout_s, max_bytes=self.max_bytes, accept=accept
        )

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
        large: list[tuple[int, Fetched]] = []
        give_up_at = started + self.timeout_s + LOOP_GRACE_S
        for pages in batches_as_they_land(self._loop, self._fetch_endpoint, mine, give_up_at):
            for i, got in sorted(pages, key=_index):  # config order: a server's rows land where they did
                if got.text is not None and len(got.text) > LARGE_PAGE_CHARS:
                    large.append((i, got))
                else:
                    self._take_page(i, got, tick, map_by)
        taken = {i for i, _ in large} | set(tick.outcomes)
        for i in mine:
            if i not in taken:  # the source's own loop is stuck: a miss
                reason = f"no answer within {self.timeout_s:g} s"
                elapsed = time.monotonic() - started
                tick.outcomes[i] = Fetched(None, elapsed, EndpointState.STALE, reason, timed_out=True)
        large.sort(key=lambda page: len(page[1].text or ""))
        while large:
            self._take_page(*large.pop(0), tick, map_by)  # popped: its text is freed once mapped

    def _take_page(self, i: int, got: Fetched, tick: _Tick, map_by: float) -> None:
        """Read endpoint i's page; settle the endpoint now unless its outcome is a miss."""
        budget = PageBudget(self.page_budget_s, map_by)
        got, part = read_page(self._endpoints[i], got, tick.ts, tick.serving, budget)
        if part is not None:
            tick.trays[i] = part
        tick.outcomes[i] = got
        if got.state != EndpointState.STALE:
            self._settle(i, got, tick, counted=True)

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
        parts.append(tick.serving.frame(tick.ts))
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

    def _update(
        self, ep: Endpoint, ts_ms: int, got: Fetched, events: list[dict[str, object]], *, counted: bool
    ) -> EndpointState:
        """Judge the endpoint on this tick's fetch; an event only when it goes DOWN or comes back.

        A miss (got.state STALE) makes it STALE, and DOWN at `down_after` in a row; a failure
        (got.state DOWN) makes it DOWN at once. Misses not `counted` (the collector was late) leave
        the count alone. Returns the state its rows show for this tick.
        """
        return judge(ep, ts_ms, got, events, down_after=self.down_after, counted=counted, logger=log)

    def statuses(self) -> list[EndpointStatus]:
        """Every endpoint's status after the last tick, trays first, in config order."""
        return [ep.status for ep in self._endpoints]

    def close(self) -> None:
        """Close the HTTP session and stop the loop thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(cancel_other_tasks(), timeout=5)  # polls still waiting for pages return now
            self._run(self._client.close(), timeout=5)
        except Exception as err:  # closing is best effort: the loop is stopped either way
            log.warning("closing the scrape session: %s", err)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


async def cancel_other_tasks() -> None:
    """Cancel every task on the running loop but this one (the fetches of polls still running)."""
    current = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not current:
            task.cancel()


def _index(page: tuple[int, Fetched]) -> int:
    return page[0]


def _event(ts: int, kind: str, source: str, detail: str) -> dict[str, object]:
    return {"ts": ts, "kind": kind, "source": source, "detail": detail}
