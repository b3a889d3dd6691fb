"""Raw samples from a Prometheus-compatible query API: one instant query of a range selector, bounded.

`GET /api/v1/query?query={…}[w]&time=t` answers a `matrix` of every selected series' stored samples in the w
before t, each with its own timestamp (prometheus.io/docs/prometheus/latest/querying/api/#instant-queries,
"range vectors" as an expression result). VictoriaMetrics answers the same for the same request (its docs:
"instant query with a range selector returns raw samples"). Raw samples, not `query_range`: query_range
evaluates the selector at each step with the backend's lookback (5 min by default), so it would repeat a
dead exporter's last value; raw samples keep counters exactly as scraped and their real timestamps.

Errors never raise: a failed query is a RawSamples with `error` set to one line (HTTP 401, connection
refused, no answer within 2 s, an error the API reported).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from collectors.scrape_http import Fetched, fetch_page

MAX_ANSWER_BYTES = 256 << 20
"""The largest answer read: a history query of one rack (30 s) is ~18 MB of JSON (bench/bench_promql.py)."""

Series = tuple[dict[str, str], list[list[float | str]]]
"""(labels with __name__, [[timestamp in s, value as the API spells it: "1.5", "NaN", "+Inf"], …]): the
answer's own lists, oldest first, unconverted (a rack's tick is ~20 k series)."""


@dataclass
class RawSamples:
    """One query's answer: its series, or why there are none."""

    series: list[Series] = field(default_factory=list)
    error: str = ""
    latency_s: float = 0.0
    bytes: int = 0


def selector(names: Sequence[str], match: Sequence[tuple[str, str]]) -> str:
    """`{__name__=~"a|b", k="v"}`: every series named in `names` that carries every matcher."""
    parts = [f'__name__=~"{_quote("|".join(names))}"', *(f'{k}="{_quote(v)}"' for k, v in match)]
    return "{" + ", ".join(parts) + "}"


def _quote(text: str) -> str:
    """A PromQL string literal's body (Go's string escapes)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def read_token(path: Path | None) -> str | None:
    """The bearer token in `path` (stripped), None without a file; OSError when it cannot be read."""
    return None if path is None else path.read_text().strip()


class QueryApi:
    """The query API at `base_url`; `raw(expr, end_ms, window_ms)`: one instant query of `expr[window]`."""

    def __init__(self, base_url: str, *, timeout_s: float, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Accept": "application/json", "User-Agent": "rack-monitor"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def url(self, expr: str, end_ms: int, window_ms: int) -> str:
        """The GET URL of one raw-sample query (nocache=1: VictoriaMetrics' result cache is skipped)."""
        params = {"query": f"{expr}[{window_ms}ms]", "time": f"{end_ms / 1000:.3f}", "nocache": "1"}
        return f"{self.base_url}/api/v1/query?{urlencode(params)}"

    def raw(self, expr: str, end_ms: int, window_ms: int) -> RawSamples:
        """The samples of `expr` in (end - window, end]; never raises for the backend's fault."""
        started = time.perf_counter()
        box: list[Fetched] = []
        asyncio.run(self._get(self.url(expr, end_ms, window_ms), box))
        got = box[0]
        latency = time.perf_counter() - started
        if got.text is None:
            return RawSamples(error=f"{self.base_url}: {got.reason}", latency_s=latency)
        # The answer travels in `box`, not as the task's result, and is decoded outside the loop: asyncio
        # reprs a finished task's result (reprlib), which cost ~0.2-0.6 s for a 5 MB answer.
        return parse_answer(got.text, self.base_url, latency)

    async def _get(self, url: str, box: list[Fetched]) -> None:
        async with aiohttp.ClientSession(headers=self._headers, auto_decompress=True) as session:
            box.append(await fetch_page(session, url, timeout_s=self.timeout_s, max_bytes=MAX_ANSWER_BYTES))

    def instant_url(self, expr: str, at_ms: int) -> str:
        """The GET URL of one instant query of `expr` at `at_ms` (its result: a vector)."""
        params = {"query": expr, "time": f"{at_ms / 1000:.3f}", "nocache": "1"}
        return f"{self.base_url}/api/v1/query?{urlencode(params)}"

    def instant_many(self, exprs: Mapping[str, str], at_ms: int) -> dict[str, Instant]:
        """Every named expression's vector at `at_ms`, the queries in flight together on one connection
        pool; never raises for the backend's fault (a failed query is an Instant with `error`)."""
        got: dict[str, Fetched] = {}
        asyncio.run(self._get_many({k: self.instant_url(e, at_ms) for k, e in exprs.items()}, got))
        return {k: parse_vector(got[k], self.base_url) for k in exprs}

    async def _get_many(self, urls: Mapping[str, str], box: dict[str, Fetched]) -> None:
        async with aiohttp.ClientSession(headers=self._headers, auto_decompress=True) as session:

            async def one(key: str, url: str) -> None:
                box[key] = await fetch_page(
                    session, url, timeout_s=self.timeout_s, max_bytes=MAX_ANSWER_BYTES
                )

            await asyncio.gather(*(one(k, u) for k, u in urls.items()))


@dataclass
class Instant:
    """One instant query's vector: (labels, value) per series, or why there is none."""

    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)
    error: str = ""
    latency_s: float = 0.0
    bytes: int = 0


def parse_vector(got: Fetched, where: str) -> Instant:
    """A fetched /api/v1/query answer of resultType vector; anything else is an error naming what it was."""
    if got.text is None:
        return Instant(error=f"{where}: {got.reason}", latency_s=got.latency_s)
    try:
        body = json.loads(got.text)
    except json.JSONDecodeError as err:
        return Instant(error=f"{where}: the answer is not JSON ({err.msg})", latency_s=got.latency_s)
    if not isinstance(body, dict) or body.get("status") != "success":
        kind = body.get("errorType", "error") if isinstance(body, dict) else "error"
        message = body.get("error", "no status") if isinstance(body, dict) else "not an object"
        return Instant(error=f"{where}: {kind}: {message}", latency_s=got.latency_s)
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        what = data.get("resultType")
        return Instant(error=f"{where}: expected a vector, got {what!r}", latency_s=got.latency_s)
    samples = [(item.get("metric") or {}, float(item["value"][1])) for item in data.get("result") or ()]
    return Instant(samples=samples, latency_s=got.latency_s, bytes=len(got.text))


def parse_answer(text: str, where: str, latency_s: float = 0.0) -> RawSamples:
    """A /api/v1/query answer of resultType matrix; anything else is an error naming what it was."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as err:
        return RawSamples(error=f"{where}: the answer is not JSON ({err.msg})", latency_s=latency_s)
    if not isinstance(body, dict) or body.get("status") != "success":
        kind = body.get("errorType", "error") if isinstance(body, dict) else "error"
        message = body.get("error", "no status") if isinstance(body, dict) else "not an object"
        return RawSamples(error=f"{where}: {kind}: {message}", latency_s=latency_s)
    data = body.get("data") or {}
    if data.get("resultType") != "matrix":
        what = data.get("resultType")
        return RawSamples(
            error=f"{where}: expected a matrix of raw samples, got {what!r}", latency_s=latency_s
        )
    series: list[Series] = []
    for item in data.get("result") or ():
        series.append((item.get("metric") or {}, item.get("values") or []))
    return RawSamples(series=series, latency_s=latency_s, bytes=len(text))
