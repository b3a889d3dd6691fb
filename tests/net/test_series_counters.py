"""Per-series counters end to end: pages that change between scrapes, over real HTTP, into a real store.

Each case serves a sequence of vLLM pages (two data-parallel engines, `engine="0"` and `engine="1"`)
on loopback, one page per scrape; the real ScrapeSource maps them and the real StoreWriter stores
the frames. The stored generation_tokens must increase, scrape to scrape, by what Prometheus' rule
gives per series (`prometheus_increase` below, an independent implementation), and by the
hand-written figures: engine 0 makes 1,000 tok/s and engine 1 2,000 tok/s, whatever resets, NaNs,
new or vanished series the pages hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from aiohttp import web

from collectors.config import ServerTarget
from collectors.scrape import ScrapeSource
from storage.reader import StoreReader
from storage.schemas import EndpointState
from storage.writer import StoreWriter
from tests.loopback import LoopbackServer

T0 = 1_790_000_000_000
NAN = math.nan
Engines = dict[str, dict[str, float]]
"""One page's figures: engine label -> {"gen": counter, "running": gauge, ...}; NaN or absent allowed."""


class SequenceServer(LoopbackServer):
    """Serves, per path, a list of page texts on 127.0.0.1: request k gets page k (then the last)."""

    def __init__(self, pages: dict[str, Sequence[str]]) -> None:
        super().__init__()
        self.pages = pages
        self.served = dict.fromkeys(pages, 0)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{path}", self._page)

    async def _page(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        pages = self.pages[path]
        page = pages[min(self.served[path], len(pages) - 1)]
        self.served[path] += 1
        return web.Response(text=page, content_type="text/plain")


def vllm_page(engines: Engines, *, repeat: Sequence[str] = ()) -> str:
    """A vLLM page with one series per engine; `repeat` names families whose engine-0 line is printed
    twice, the second time with a different value (a duplicate series)."""
    families = (
        ("vllm:generation_tokens_total", "counter", "gen"),
        ("vllm:prompt_tokens_total", "counter", "prompt"),
        ("vllm:num_requests_running", "gauge", "running"),
        ("vllm:num_requests_waiting", "gauge", "waiting"),  # a vLLM page always has it
        ("vllm:kv_cache_usage_perc", "gauge", "kv"),
    )
    lines = []
    for name, kind, key in families:
        lines.append(f"# TYPE {name} {kind}")
        for engine, values in engines.items():
            if key not in values:
                continue
            head = f'{name}{{engine="{engine}",model_name="m"}}'
            lines.append(f"{head} {values[key]}")
            if key in repeat and engine == "0":
                lines.append(f"{head} {values[key] * 2 + 1}")
    return "\n".join(lines) + "\n"


def engine(gen: float, *, prompt: float | None = None, running: float = 10, kv: float = 0.5) -> dict:
    prompt = gen * 3 if prompt is None else prompt
    return {"gen": gen, "prompt": prompt, "running": running, "waiting": 0, "kv": kv}


def steady(i: int) -> Engines:
    """Scrape i of the steady rack: engine 0 at +1,000 tok/s, engine 1 at +2,000 (1 s apart)."""
    return {"0": engine(10_000_000 + 1000 * i), "1": engine(2_000_000 + 2000 * i)}


def prometheus_increase(scrapes: Sequence[Engines], key: str = "gen") -> list[float]:
    """Per scrape, the increase since the scrape before by Prometheus' per-series rule, written
    independently of collectors.series_counters: each series' finite samples in order, summing
    v - p where v >= p, else v (a reset); NaN and absent samples are skipped."""
    last: dict[str, float] = {}
    out = []
    for page in scrapes:
        step = 0.0
        for name, values in page.items():
            v = values.get(key)
            if v is None or v != v:
                continue
            if name in last:
                p = last[name]
                step += v - p if v >= p else v
            last[name] = v
        out.append(step)
    return out


@dataclass
class Run:
    """What one collection stored and said: serving rows by scrape, the endpoint's status after each
    scrape, and the reader's increase of generation_tokens over the whole window."""

    rows: list[dict]
    statuses: list[tuple[EndpointState, str]]
    window_increase: float


def collect(tmp_path: Path, scrapes: Sequence[str], restart_at: int | None = None) -> Run:
    """Scrape `scrapes` pages 1 s apart through ScrapeSource into a StoreWriter.

    restart_at: start a new ScrapeSource (a collector restart) at that scrape.
    """
    statuses: list[tuple[EndpointState, str]] = []
    with SequenceServer({"vllm": scrapes}) as server:
        writer = StoreWriter(tmp_path / "store", compaction="off")
        targets = [ServerTarget("vllm-0", server.url("vllm"), engine="vllm")]
        source = ScrapeSource([], targets, timeout_s=5.0)
        try:
            for i in range(len(scrapes)):
                if i == restart_at:
                    source.close()
                    source = ScrapeSource([], targets, timeout_s=5.0)
                writer.append(source.poll(T0 + 1000 * i))
                status = source.statuses()[0]
                statuses.append((status.state, status.reason))
            writer.flush()
        finally:
            source.close()
            writer.close()
    with StoreReader(tmp_path / "store") as reader:
        rows = reader.sql("SELECT * FROM serving ORDER BY ts").to_pylist()
        window = reader.rate("serving", "generation_tokens", T0, T0 + 1000 * (len(scrapes) - 1))
    return Run(rows, statuses, window.column("increase").to_pylist()[0])


def stored_increases(rows: Sequence[dict], column: str = "generation_tokens") -> list[float]:
    """Scrape-to-scrape increases of the stored column with a reader's ordinary per-row reset rule."""
    out = [0.0]
    for before, row in pairwise(rows):
        p, v = before[column], row[column]
        out.append(v - p if v >= p else v)
    return out


def check(run: Run, pages: Sequence[Engines], expected: Sequence[float]) -> list[dict]:
    """Stored increases = Prometheus' per-series rule = the hand figures; the reader's window agrees."""
    assert prometheus_increase(pages) == list(expected)
    assert stored_increases(run.rows) == list(expected)
    assert run.window_increase == sum(expected)
    return run.rows


def test_only_engine_1_restarts(tmp_path: Path) -> None:
    pages = [steady(i) for i in range(3)]
    # engine 1 restarted just after scrape 2: 2,000 tokens since, then +2,000/s again
    pages += [{"0": steady(i)["0"], "1": engine(2000 * (i - 2))} for i in range(3, 6)]
    run = collect(tmp_path, [vllm_page(p) for p in pages])
    rows = check(run, pages, [0, 3000, 3000, 3000, 3000, 3000])
    assert [r["generation_tokens"] for r in rows] == [0, 3000, 6000, 9000, 12000, 15000]
    assert all(r["state"] == EndpointState.OK for r in rows)


def test_one_engine_nan_for_one_scrape(tmp_path: Path) -> None:
    pages = [steady(i) for i in range(6)]
    pages[3] = {"0": steady(3)["0"], "1": engine(NAN, prompt=NAN)}
    run = collect(tmp_path, [vllm_page(p) for p in pages])
    # scrape 3 counts engine 0 only; scrape 4 compares engine 1 with its last real value (scrape 2)
    rows = check(run, pages, [0, 3000, 3000, 1000, 5000, 3000])
    assert [r["state"] for r in rows] == [0, 0, 0, EndpointState.PARTIAL, 0, 0]
    assert (
        run.statuses[3][0] == EndpointState.OK
        and "2 series NaN (generation_tokens, prompt_tokens)" in run.statuses[3][1]
    )


def test_a_new_series_first_seen_at_five_million_counts_from_its_second_sample(tmp_path: Path) -> None:
    pages = [steady(i) for i in range(6)]
    for i in range(3, 6):
        pages[i] = {**steady(i), "2": engine(5_000_000 + 500 * (i - 3))}
    run = collect(tmp_path, [vllm_page(p) for p in pages])
    check(run, pages, [0, 3000, 3000, 3000, 3500, 3500])


def test_a_series_that_disappears_and_comes_back(tmp_path: Path) -> None:
    pages = [steady(i) for i in range(8)]
    for i in (3, 4, 5):
        pages[i] = {"0": steady(i)["0"]}
    run = collect(tmp_path, [vllm_page(p) for p in pages])
    # while engine 1 is gone only engine 0 counts; back at scrape 6 it adds its 4 s since scrape 2
    rows = check(run, pages, [0, 3000, 3000, 1000, 1000, 1000, 1000 + 8000, 3000])
    partial = [r["endpoint"] for r in rows if r["state"] == EndpointState.PARTIAL]
    assert len(partial) == 3 and "series missing" in run.statuses[4][1]
    assert rows[4]["running"] == 10  # engine 0's gauge, shown as partial, not averaged as whole


def test_duplicate_series_keep_the_first_sample_and_are_counted(tmp_path: Path) -> None:
    pages = [steady(i) for i in range(4)]
    texts = [vllm_page(p, repeat=("gen", "running")) for p in pages]
    run = collect(tmp_path, texts)
    rows = check(run, pages, [0, 3000, 3000, 3000])
    assert {r["running"] for r in rows} == {20}  # 10 + 10, not 10 + 21 + 10
    assert {r["dup_samples"] for r in rows} == {2}
    assert {r["state"] for r in rows} == {EndpointState.OK}
    assert all("2 duplicate samples dropped" in reason for _, reason in run.statuses)


def test_nan_gauges_mark_the_row_partial_and_keep_the_engines_that_answered(tmp_path: Path) -> None:
    pages = [steady(i) for i in range(3)]
    pages[2] = {"0": engine(10_002_000, running=7, kv=0.25), "1": engine(2_004_000, running=NAN, kv=NAN)}
    run = collect(tmp_path, [vllm_page(p) for p in pages])
    rows = check(run, pages, [0, 3000, 3000])
    assert rows[2]["state"] == EndpointState.PARTIAL
    assert (rows[2]["running"], rows[2]["kv_cache_q4"]) == (7, 2500)  # engine 0's, flagged partial
    assert "2 series NaN (kv_cache, running)" in run.statuses[2][1]


def test_a_collector_restart_counts_no_lifetime_total(tmp_path: Path) -> None:
    pages = [steady(i) for i in range(6)]
    rows = collect(tmp_path, [vllm_page(p) for p in pages], restart_at=3).rows
    # the new collector starts its column at 0 again: the reader sees a reset to 0, so no new work
    assert [r["generation_tokens"] for r in rows] == [0, 3000, 6000, 0, 3000, 6000]
    assert stored_increases(rows) == [0, 3000, 3000, 0, 3000, 3000]
