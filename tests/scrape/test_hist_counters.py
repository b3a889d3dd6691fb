"""serving_hist against an independent implementation of Prometheus' per-series rule, on random pages.

Random bucket streams of a few vLLM engines: every engine's buckets are cumulative in `le`, an engine
may restart (all its buckets and its sum start again from a few observations) or be absent from a
page. The mapped rows (running totals per (metric, le)) must grow by `sum by (le) (increase(...))`
taken per series, written here from the rule.

Monotone in `le`: a restart resets all of an engine's buckets together, so when every bucket of it
reads as a reset (its new count below the old, or the old one 0), any window's bucket increases stay
cumulative in `le` and histogram_quantile needs no repair. A restart that leaves some bucket at or
above its old count cannot be seen in that bucket by anyone (Prometheus neither); the increases then
equal Prometheus' and may dip in `le`, which histogram_quantile repairs (promql/quantile.go
ensureMonotonic; storage.quantile.bucket_quantile does the same), so quantiles stay monotone in q.
"""

from __future__ import annotations

import math
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.mappings import map_serving
from collectors.series_counters import SeriesCounters
from storage.quantile import bucket_quantile

LES = ("0.05", "0.25", "1.0", "+Inf")
NAME = "vllm:time_to_first_token_seconds"
Engine = tuple[list[float], float]
"""One engine on one page: cumulative bucket counts (one per LES) and its _sum."""
Scrape = dict[str, Engine]
"""engine label -> its histogram on the page (engines absent from the page are left out)."""


def observations(draw: st.DrawFn) -> tuple[list[float], float]:
    """New observations of one scrape: per-bucket counts made cumulative, and their seconds."""
    per_bucket = [float(draw(st.integers(0, 50))) for _ in LES]
    cumulative = [sum(per_bucket[: i + 1]) for i in range(len(LES))]
    return cumulative, float(draw(st.integers(0, 1000))) / 8


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Scrape], bool]:
    """Scrapes, and whether every restart reads as a reset in each bucket of its engine."""
    engines = [str(i) for i in range(draw(st.integers(1, 3)))]
    state: dict[str, Engine] = {}
    for name in engines:
        counts, total = observations(draw)
        lifetime = float(draw(st.integers(0, 10**7)))
        state[name] = ([c + lifetime for c in counts], total + lifetime)
    scrapes: list[Scrape] = []
    visible = True
    for _ in range(draw(st.integers(1, 25))):
        page: Scrape = {}
        for name in engines:
            what = draw(st.sampled_from(["up", "up", "up", "restart", "absent"]))
            counts, total = observations(draw)
            if what == "restart":
                before = state[name][0]
                visible &= all(v < p or p == 0 for p, v in zip(before, counts, strict=True))
                state[name] = (counts, total)
            elif what == "up":
                before, before_sum = state[name]
                state[name] = ([b + c for b, c in zip(before, counts, strict=True)], before_sum + total)
            if what != "absent":
                page[name] = state[name]
        scrapes.append(page)
    return scrapes, visible


def page_text(scrape: Scrape) -> str:
    lines = [f"# TYPE {NAME} histogram"]
    for engine, (counts, total) in scrape.items():
        labels = f'engine="{engine}",model_name="m"'
        lines += [f'{NAME}_bucket{{{labels},le="{le}"}} {c}' for le, c in zip(LES, counts, strict=True)]
        lines += [f"{NAME}_count{{{labels}}} {counts[-1]}", f"{NAME}_sum{{{labels}}} {total}"]
    return "\n".join(lines) + "\n"


def prometheus_increase(scrapes: list[Scrape]) -> tuple[list[float], float]:
    """Per series (engine, le) and per engine's _sum: the sum over consecutive samples of v - p if
    v >= p, else v (promql/functions.go); then summed by le. Independent of the code under test."""
    buckets = [0.0] * len(LES)
    total = 0.0
    for engine in {name for scrape in scrapes for name in scrape}:
        samples = [s[engine] for s in scrapes if engine in s]
        for (p, p_sum), (v, v_sum) in pairwise(samples):
            for i in range(len(LES)):
                buckets[i] += v[i] - p[i] if v[i] >= p[i] else v[i]
            total += v_sum - p_sum if v_sum >= p_sum else v_sum
    return buckets, total


@settings(max_examples=200, deadline=None)
@given(streams())
def test_bucket_totals_are_prometheus_increase_per_series_summed_by_le(
    stream: tuple[list[Scrape], bool],
) -> None:
    scrapes, visible = stream
    state = SeriesCounters()
    stored: list[list[float]] = []
    for n, scrape in enumerate(scrapes):
        frame = map_serving(page_text(scrape), "ep", n, engine="vllm", series=state)
        rows = frame.table("serving_hist").to_pylist() if "serving_hist" in frame.batches else []
        if not scrape:
            assert rows == []
            continue
        assert [r["le"] for r in rows] == [float(le) for le in LES]
        want, want_sum = prometheus_increase(scrapes[: n + 1])
        assert [r["count"] for r in rows] == want
        assert rows[-1]["sum_s"] == want_sum
        stored.append([float(r["count"]) for r in rows])
    bounds = [float(le) for le in LES]
    for i, before in enumerate(stored):
        for after in stored[i + 1 :]:
            # The running totals never fall, so a window's increase is after - before.
            window = [a - b for a, b in zip(after, before, strict=True)]
            assert all(w >= 0 for w in window)
            if visible:
                assert window == sorted(window)  # cumulative in le
            quantiles = [bucket_quantile(q / 10, list(zip(bounds, window, strict=True))) for q in range(11)]
            finite = [x for x in quantiles if not math.isnan(x)]
            assert finite == sorted(finite)
