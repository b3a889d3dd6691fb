"""One scraped endpoint: what the scrape source keeps for it, and how one of its pages becomes rows.

A page is parsed within its budget (collectors.page_budget): past it the parser gives up, the endpoint
gets no rows this tick and says why, and the rest of the tick goes on (collectors.scrape).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from collectors.config import ServerTarget, TrayTarget
from collectors.mappings import (
    GpuPageMapper,
    MappingError,
    ServingRows,
    add_serving,
    detect_engine,
    serving_want,
)
from collectors.mappings.gpu_values import gpu_want
from collectors.mappings.tray_arrow import decode_tray_stream
from collectors.page_budget import PageBudget, PageOverBudget
from collectors.promtext import ExpositionError, ExpositionParser
from collectors.promtext_openmetrics import is_openmetrics, to_text_format
from collectors.scrape_http import Fetched
from collectors.series_counters import SeriesCounters
from storage.frame import Frame
from storage.schemas import EndpointState, EventKind

log = logging.getLogger(__name__)

Kind = Literal["tray", "server"]

DEFAULT_PAGE_BUDGET_S = 0.5
"""Seconds one page may take to parse (collectors.page_budget.PageBudget says why wall-clock time). The
rack's pages parse and map in under 1 ms each warm (bench/bench_scrape.py: ~60 ms of CPU for 90 pages)
and a few ms cold; 0.5 s is 100x a cold page, ~10x one on a host loaded 10 deep, and fits the poller's
MAPPING_ALLOWANCE_S, so a page cut at its budget still reaches its tick."""


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
        answer: what its last answer was: "text", "arrow" (a tray agent's Arrow stream), "" before one.
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
    answer: str = ""
    seen: bool = False
    """Whether any tick has looked at it yet."""


@dataclass
class Endpoint:
    """A scrape source's state for one endpoint: its status, its page parser and mapping state."""

    status: EndpointStatus
    tray: TrayTarget | None = None
    server: ServerTarget | None = None
    mapper: GpuPageMapper | None = None
    parser: ExpositionParser = field(default_factory=ExpositionParser, repr=False)
    """The endpoint's page parser: its pages share their shape (a server's shares its caches with the
    other servers' until one of its pages fails)."""
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


def read_page(
    ep: Endpoint, got: Fetched, ts_ms: int, serving: ServingRows, budget: PageBudget
) -> tuple[Fetched, Frame | None]:
    """Parse and map one fetched page within `budget`: (the outcome without the page, a tray's rows).

    A server's rows go to `serving`. Parsing stops when the budget is spent; mapping runs to its end
    once parsing is done: it moves the endpoint's counter state, which must move for a whole page or
    not at all. A page that fails takes its parser's caches with it.
    """
    if got.arrow is not None:
        return _read_arrow(ep, got, ts_ms)
    if got.text is None:
        return got, None
    ep.status.answer = "text"
    try:
        text = got.text
        if is_openmetrics(text, got.content_type):
            text = to_text_format(text)
        if ep.mapper is not None:
            part = ep.mapper.map(ep.parser.parse(text, gpu_want, give_up=budget.spent), ts_ms)
            if "gpu" in part.batches:
                ep.last_gpu = part.batches["gpu"]
            return Fetched(None, got.latency_s, EndpointState.OK), part
        ep.status.engine = _map_server(ep, text, serving, budget)
        return Fetched(None, got.latency_s, EndpointState.OK), None
    except PageOverBudget as over:
        if budget.own_spent():
            reason = f"page not parsed within its {budget.budget_s:g} s budget ({over})"
            failed = Fetched(None, got.latency_s, EndpointState.DOWN, reason)
        else:  # the tick's time ran out, not the page's: a miss
            reason = f"page not parsed by the tick's deadline ({over})"
            failed = Fetched(None, got.latency_s, EndpointState.STALE, reason)
    except (ExpositionError, MappingError) as err:
        failed = Fetched(None, got.latency_s, EndpointState.DOWN, f"malformed page: {err}")
    # The series heads the bad page left in the parser's caches go with it (a server's parser
    # shared its caches with the other servers; from now on this one keeps its own).
    ep.parser = ExpositionParser()
    return failed, None


def _read_arrow(ep: Endpoint, got: Fetched, ts_ms: int) -> tuple[Fetched, Frame | None]:
    """Map a tray's Arrow answer (collectors.mappings.tray_arrow): no text to parse, no budget to keep.

    A stream that fails validation, or an Arrow answer from an endpoint that is no tray, makes the
    endpoint DOWN with the reason, as a malformed text page does: no rows of it reach the frame.
    """
    assert got.arrow is not None
    ep.status.answer = "arrow"
    if ep.mapper is None:
        reason = "malformed page: an Arrow answer from an inference server (only tray agents answer Arrow)"
        return Fetched(None, got.latency_s, EndpointState.DOWN, reason), None
    try:
        part = ep.mapper.map_stream(decode_tray_stream(got.arrow), ts_ms)
    except MappingError as err:
        return Fetched(None, got.latency_s, EndpointState.DOWN, f"malformed Arrow answer: {err}"), None
    if "gpu" in part.batches:
        ep.last_gpu = part.batches["gpu"]
    return Fetched(None, got.latency_s, EndpointState.OK), part


def _map_server(ep: Endpoint, text: str, rows: ServingRows, budget: PageBudget) -> str:
    """Add a server's serving and serving_hist rows to `rows`; returns its engine."""
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


def endpoint_event(ts_ms: int, kind: str, source: str, detail: str) -> dict[str, object]:
    """An `events` row about an endpoint (ENDPOINT_DOWN, ENDPOINT_UP)."""
    return {"ts": ts_ms, "kind": kind, "source": source, "detail": detail}


def judge(
    ep: Endpoint,
    ts_ms: int,
    got: Fetched,
    events: list[dict[str, object]],
    *,
    down_after: int,
    counted: bool = True,
    misses: str = "failed scrapes",
    streak: str = "scrapes",
    logger: logging.Logger = log,
) -> EndpointState:
    """Judge an endpoint on this tick's answer; an event only when it goes DOWN or comes back.

    A miss (got.state STALE) makes it STALE, and DOWN at `down_after` in a row; a failure (got.state
    DOWN) makes it DOWN at once. Misses not `counted` (the collector was late) leave the count alone.
    `misses` and `streak` name a miss in the events' text ('failed scrapes'/'scrapes', 'ticks without
    samples'/'ticks'); `logger` is the caller's.
    The scrape source and the PromQL source both judge by this. Returns the state its rows show.
    """
    status = ep.status
    if got.state == EndpointState.OK:
        if status.state == EndpointState.DOWN and status.seen:
            detail = f"{status.name} answering again after {status.misses} {misses}"
            events.append(endpoint_event(ts_ms, EventKind.ENDPOINT_UP, status.name, detail))
        # an answering endpoint may still carry a warning (NaN series, repeated samples)
        status.state, status.misses, status.reason = EndpointState.OK, 0, ep.warning
        status.last_ok_ms = ts_ms
        status.latency_s = got.latency_s
        status.seen = True
        return EndpointState.OK
    if counted or got.state == EndpointState.DOWN:
        status.misses += 1
    down = got.state == EndpointState.DOWN or status.misses >= down_after
    if down and status.state != EndpointState.DOWN:
        why = (
            got.reason
            if got.state == EndpointState.DOWN
            else f"{got.reason} ({status.misses} {streak} in a row)"
        )
        logger.warning("%s (%s) down: %s", status.name, status.url, why)
        events.append(endpoint_event(ts_ms, EventKind.ENDPOINT_DOWN, status.name, f"{status.name}: {why}"))
        status.state = EndpointState.DOWN
    elif status.state != EndpointState.DOWN:
        status.state = EndpointState.STALE
    status.latency_s = got.latency_s if got.state == EndpointState.DOWN else None
    status.reason = got.reason
    status.seen = True
    return status.state
