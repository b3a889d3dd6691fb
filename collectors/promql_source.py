"""The PromQL source: a rack read from a Prometheus-compatible query API (Prometheus, VictoriaMetrics…).

One query a tick: every series of the rack (the GPU metrics the tray mapper reads, by exact name, and every
inference engine's metrics, by prefix) under the config's label matchers, as raw samples of the last
`lookback` seconds (collectors.promql_api). The series are cut back into one page per tray host and per
server (collectors.promql_pages) and mapped by the scrape path's own code (scrape_endpoint.read_page), so
the Frames are those a scrape of the same pages gives, and the poller, store, alerts and views run unchanged.

Health, per endpoint as in the scrape source: a tray or server without a sample in the lookback window
missed the tick (its GPUs STALE, its serving row STALE), DOWN after `down_after` misses in a row. The
backend itself failing (refused, HTTP 401/5xx, no answer within the timeout, an API error) is one state of
the whole source: every endpoint STALE with the backend's reason, one endpoint_down event naming the
backend, and endpoint_up when it answers again; the endpoints' own miss counts are left alone.

History (`history`): the same query over a window, in chunks, the same tick rule, the same mapping: what
`monitor import` writes into a store for replay, report and export.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from collectors.config import RackConfig, ServerTarget, TrayTarget
from collectors.mappings import GpuPageMapper, ServingRows
from collectors.page_budget import PageBudget
from collectors.poller import MAPPING_ALLOWANCE_S
from collectors.promql_api import QueryApi, RawSamples, read_token, selector
from collectors.promql_fleet import host_port, tray_finder
from collectors.promql_pages import PageKey, RackSeries, SeriesCache, gpu_names, serving_patterns, tick_grid
from collectors.promtext import ExpositionParser
from collectors.scrape_endpoint import (
    DEFAULT_PAGE_BUDGET_S,
    Endpoint,
    EndpointStatus,
    endpoint_event,
    judge,
    read_page,
)
from collectors.scrape_http import Fetched
from collectors.stand_ins import stale_gpu_rows
from storage.frame import Frame, batch_from_rows, merge_frames
from storage.schemas import EndpointState, EventKind

log = logging.getLogger(__name__)

QUERIES_PER_TICK = 1
"""Every series of the rack comes in one request a tick (bench/bench_promql.py measures it)."""
HISTORY_CHUNK_MS = 30_000
"""A history query covers this much time: one rack's 30 s are ~18 MB of JSON (4.6 MB of series, 0.45 MB a
sample; bench/bench_promql.py), within the backends' default limits (Prometheus --query.max-samples 50 M;
30 s are ~0.7 M samples) and ~200 MB of decoded answer in memory."""


class PromqlError(Exception):
    """The backend could not answer a history query; the message is one line."""


class PromQLSource:
    """A Source (collectors.source.Source) over a rack's series in a query API."""

    max_concurrent_polls = 1

    def __init__(self, config: RackConfig, *, timeout_s: float) -> None:
        """Args:
        config: a rack config with a [promql] table (its [[tray]] hosts and [[server]] URLs are used too).
        timeout_s: the most one query may take, connect to last byte.

        Raises:
            ValueError: the config has no [promql] table.
            OSError: the bearer token file cannot be read.
        """
        promql = config.promql
        if promql is None:
            raise ValueError(f"{config.name}: the rack config has no [promql] table")
        self.name = config.name
        self.url = promql.url
        self.timeout_s = timeout_s
        self.down_after = config.down_after
        self.lookback_ms = round(promql.lookback_s * 1000)
        self.api = QueryApi(promql.url, timeout_s=timeout_s, token=read_token(promql.bearer_token_file))
        prefixes = [s.metrics_prefix for s in config.servers if s.metrics_prefix]
        self.expr = selector([*gpu_names(), *serving_patterns(prefixes)], promql.match)
        self._hostname_label = promql.hostname_label
        self._server_label = promql.server_label
        self._tray_of = {t.host: t.tray for t in config.trays} | dict(promql.trays)
        self._tray_for = tray_finder(config)
        self._server_key = {
            value: host_port(s.url) for s in config.servers for value in (s.name, host_port(s.url))
        }
        """A server label's value (host:port, or the server's name) -> its endpoint's key."""
        self._endpoints: dict[PageKey, Endpoint] = {}
        self._series_cache: SeriesCache = {}
        for host in self._tray_of:
            self._endpoint(("tray", host))
        for server in config.servers:
            status = EndpointStatus(server.name, promql.url, "server", engine=server.engine)
            self._endpoints["server", host_port(server.url)] = Endpoint(
                status, server=server, parser=ExpositionParser()
            )
        self.state = EndpointState.OK
        self.reason = ""
        """The backend's own state and why it is not OK (the query failed)."""
        self.queries = 0
        self.last_answer: RawSamples | None = None

    @classmethod
    def from_config(cls, config: RackConfig, *, timeout_s: float | None = None) -> PromQLSource:
        """The source of a rack config (timeout_s overrides the config's, else its default at 1 Hz)."""
        return cls(config, timeout_s=timeout_s if timeout_s is not None else config.timeout_for(1.0))

    # -- endpoints -------------------------------------------------------------------------------

    def _endpoint(self, key: PageKey) -> Endpoint | None:
        """The endpoint of a page key: a tray host met for the first time gets one; an unknown server none."""
        known = self._endpoints.get(key)
        if known is not None or key[0] != "tray":
            return known
        host = key[1]
        tray = self._tray_for(host)
        status = EndpointStatus(host, self.url, "tray")
        target = TrayTarget(tray or 0, host, self.url)
        ep = Endpoint(status, tray=target, mapper=GpuPageMapper(host, tray=tray))
        self._endpoints[key] = ep
        return ep

    def _ordered(self) -> list[tuple[PageKey, Endpoint]]:
        """Trays by tray number (unplaced hosts last, by name), then servers in config order."""
        trays = [(k, ep) for k, ep in self._endpoints.items() if k[0] == "tray"]
        trays.sort(key=lambda item: (item[1].tray.tray or 99 if item[1].tray else 99, item[0][1]))
        return [*trays, *((k, ep) for k, ep in self._endpoints.items() if k[0] == "server")]

    def statuses(self) -> list[EndpointStatus]:
        """Every endpoint's status after the last tick, trays first (what `monitor doctor` prints)."""
        return [ep.status for _, ep in self._ordered()]

    # -- ticks -------------------------------------------------------------------------------------

    def poll(self, ts_ms: int) -> Frame:
        """One query for the tick's samples, mapped as its pages; never raises for the backend's fault."""
        answer = self.api.raw(self.expr, ts_ms, self.lookback_ms)
        self.queries += 1
        self.last_answer = answer
        return self.frames_from(answer, [ts_ms])[0]

    def frames_from(self, answer: RawSamples, ticks: list[int]) -> list[Frame]:
        """The frames at `ticks` (oldest first) from one answer covering them and their lookback."""
        if answer.error:
            return [self._backend_failed(ts, answer.error) for ts in ticks]
        rack = RackSeries(
            self._hostname_label, self._server_label, frozenset(self._server_keys()), self._series_cache
        )
        rack.add(answer.series)
        for key in rack.endpoint_keys():
            self._endpoint(key)
        return [self._tick(ts, self._pages_at(rack, ts), answer.latency_s) for ts in ticks]

    def _pages_at(self, rack: RackSeries, ts: int) -> dict[PageKey, str]:
        """The rack's pages at `ts`, a server's under its URL's host:port whichever label value named it."""
        pages = rack.pages_at(ts, self.lookback_ms)
        return {
            (k[0], self._server_key.get(k[1], k[1])) if k[0] == "server" else k: v for k, v in pages.items()
        }

    def _server_keys(self) -> list[str]:
        return list(self._server_key)

    def history(self, since_ms: int, until_ms: int, step_ms: int) -> Iterator[Frame]:
        """Frames on the step grid in [since, until], read in chunks of HISTORY_CHUNK_MS.

        Raises:
            PromqlError: a chunk's query failed (the reason, one line).
        """
        ticks = list(tick_grid(since_ms, until_ms, step_ms))
        per_chunk = max(1, HISTORY_CHUNK_MS // step_ms)
        for start in range(0, len(ticks), per_chunk):
            chunk = ticks[start : start + per_chunk]
            window = chunk[-1] - chunk[0] + self.lookback_ms
            answer = self.api.raw(self.expr, chunk[-1], window)
            self.queries += 1
            if answer.error:
                raise PromqlError(answer.error)
            yield from self.frames_from(answer, chunk)

    def _tick(self, ts: int, pages: dict[PageKey, str], latency_s: float) -> Frame:
        events: list[dict[str, object]] = []
        if self.state != EndpointState.OK:
            detail = f"{self.name}: {self.url} answering again"
            events.append(endpoint_event(ts, EventKind.ENDPOINT_UP, self.name, detail))
            self.state, self.reason = EndpointState.OK, ""
        budget = PageBudget(DEFAULT_PAGE_BUDGET_S, time.monotonic() + self.timeout_s + MAPPING_ALLOWANCE_S)
        parts: list[Frame] = []
        serving = ServingRows()
        for key, ep in self._ordered():
            text = pages.get(key)
            if text is None:
                reason = f"no samples in the last {self.lookback_ms / 1000:g} s at {self.url}"
                got, part = Fetched(None, latency_s, EndpointState.STALE, reason), None
            else:
                got, part = read_page(ep, Fetched(text, latency_s, EndpointState.OK), ts, serving, budget)
            shown = judge(ep, ts, got, events, down_after=self.down_after, misses="ticks without samples",
                          streak="ticks", logger=log)  # fmt: skip
            if part is not None:
                parts.append(part)
            elif shown != EndpointState.OK:
                self._stand_in(ep, ts, shown, parts, serving)
        parts.append(serving.frame(ts))
        if events:
            parts.append(Frame(ts, {"events": batch_from_rows("events", events)}))
        return merge_frames(ts, parts)

    def _backend_failed(self, ts: int, reason: str) -> Frame:
        """The query failed: every endpoint STALE with the backend's reason, one event per outage."""
        events: list[dict[str, object]] = []
        if self.state == EndpointState.OK:
            log.warning("%s: query failed: %s", self.name, reason)
            detail = f"{self.name}: query failed: {reason}"
            events.append(endpoint_event(ts, EventKind.ENDPOINT_DOWN, self.name, detail))
        self.state, self.reason = EndpointState.DOWN, reason
        parts: list[Frame] = []
        serving = ServingRows()
        for _, ep in self._ordered():
            if ep.status.state != EndpointState.DOWN:
                ep.status.state = EndpointState.STALE
            ep.status.reason = f"backend: {reason}"
            self._stand_in(ep, ts, EndpointState.STALE, parts, serving)
        parts.append(serving.frame(ts))
        if events:
            parts.append(Frame(ts, {"events": batch_from_rows("events", events)}))
        return merge_frames(ts, parts)

    @staticmethod
    def _stand_in(
        ep: Endpoint, ts: int, state: EndpointState, parts: list[Frame], serving: ServingRows
    ) -> None:
        """Rows for an endpoint without a page this tick: its GPUs STALE, or its serving row in `state`."""
        if ep.mapper is not None:
            stale = stale_gpu_rows(ep.last_gpu, ts)
            if stale is not None:
                parts.append(Frame(ts, {"gpu": stale}))
            return
        server: ServerTarget | None = ep.server
        serving.serving.add(
            {
                "endpoint": ep.status.name,
                "engine": ep.status.engine or (server.engine if server else None) or "unknown",
                "gpus": ep.gpus_text,
                "state": int(state),
            }
        )

    def close(self) -> None:
        """Nothing is held between polls (each query opens and closes its own connection)."""
