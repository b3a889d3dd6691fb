"""SeriesCounters against an independent implementation of Prometheus' per-series increase, and the
parser's first-sample rule for repeated series (line-by-line and page-shape paths alike)."""

from __future__ import annotations

import math
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.mappings import map_serving
from collectors.promtext import ExpositionParser
from collectors.series_counters import SeriesCounters

ABSENT = None
Scrape = dict[str, float | None]
"""One page: series name -> value (NaN allowed; ABSENT: not on the page)."""


def prometheus_increase(scrapes: list[Scrape]) -> float:
    """Per series, the sum over consecutive finite samples of (v - p if v >= p else v); then the sum
    over series. Written from the rule in promql/functions.go, not from the code under test."""
    total = 0.0
    for name in {name for scrape in scrapes for name in scrape}:
        finite = [s[name] for s in scrapes if s.get(name) is not None and not math.isnan(s[name])]
        for p, v in pairwise(finite):
            total += v - p if v >= p else v
    return total


@st.composite
def streams(draw: st.DrawFn) -> list[Scrape]:
    """Counter streams of a few series: increases, resets, NaN, gaps, late starts, early ends."""
    names = [f"engine{i}" for i in range(draw(st.integers(1, 5)))]
    length = draw(st.integers(1, 40))
    values = dict.fromkeys(names, 0.0)
    scrapes: list[Scrape] = []
    for _ in range(length):
        scrape: Scrape = {}
        for name in names:
            what = draw(st.sampled_from(["up", "up", "up", "reset", "nan", "absent"]))
            if what == "absent":
                continue
            if what == "nan":
                scrape[name] = math.nan
                continue
            if what == "reset":
                values[name] = float(draw(st.integers(0, 50)))
            else:
                values[name] += draw(st.integers(0, 10_000))
            scrape[name] = values[name]
        scrapes.append(scrape)
    return scrapes


@settings(max_examples=300, deadline=None)
@given(streams())
def test_cumulative_increase_is_prometheus_rule_per_series(scrapes: list[Scrape]) -> None:
    state = SeriesCounters()
    for n, scrape in enumerate(scrapes, 1):
        state.begin()
        total, nans = state.fold("generation_tokens", [(k, v) for k, v in scrape.items() if v is not ABSENT])
        assert total == prometheus_increase(scrapes[:n])
        assert nans == sum(1 for v in scrape.values() if v is not ABSENT and math.isnan(v))


def test_missing_series_are_reported_for_a_while_then_forgotten() -> None:
    state = SeriesCounters(missing_scrapes=3)
    state.begin()
    state.fold("c", [("a", 1.0), ("b", 1.0)])
    for _ in range(3):
        state.begin()
        state.fold("c", [("a", 2.0)])
        assert state.missing() == [("c", "b")]
    state.begin()
    state.fold("c", [("a", 3.0)])
    assert state.missing() == []


def test_state_is_bounded_and_forgets_the_least_recently_seen() -> None:
    state = SeriesCounters(max_series=10)
    for n in range(30):
        state.begin()
        state.fold("c", [("kept", float(n)), (f"once{n}", 5.0)])
    state.begin()
    assert state.fold("c", [("kept", 40.0)])[0] == 40.0  # +1 per scrape, then +11
    assert len(state._gone) <= 10 and ("c", "once0") not in state._gone


def test_without_state_a_page_is_a_first_sight() -> None:
    page = '# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{engine="0"} 5e6\n'
    (row,) = map_serving(page, "ep", 0).batches["serving"].to_pylist()
    assert row["generation_tokens"] == 0 and row["prompt_tokens"] is None


DUPS = """# TYPE g gauge
g{a="1",b="2"} 1
g{b="2",a="1"} 7
g{a="2"} 3
g{a="2"} 9
# TYPE c_total counter
c_total 4
"""


def families(parser: ExpositionParser, text: str) -> dict[str, tuple[list[float], int]]:
    return {name: ([s.value for s in f.samples], f.duplicates) for name, f in parser.parse(text).items()}


def test_repeated_series_keep_their_first_sample_on_both_parse_paths() -> None:
    parser = ExpositionParser()
    first = families(parser, DUPS)
    assert first == {"g": ([1.0, 3.0], 2), "c_total": ([4.0], 0)}
    assert parser._shape is not None  # the next page of this shape takes the fast path
    assert families(parser, DUPS.replace(" 3\n", " 30\n")) == {"g": ([1.0, 30.0], 2), "c_total": ([4.0], 0)}
    clean = DUPS.replace('g{a="2"} 9\n', "")
    # the duplicates of one page do not stay in the shape: a clean page counts none
    assert families(parser, clean) == {"g": ([1.0, 3.0], 1), "c_total": ([4.0], 0)}
    assert families(parser, clean.replace('g{b="2",a="1"} 7\n', "")) == {
        "g": ([1.0, 3.0], 0),
        "c_total": ([4.0], 0),
    }
    assert families(parser, DUPS) == first


def test_distinct_timestamps_are_not_duplicates() -> None:
    page = "# TYPE g gauge\ng 1 1000\ng 2 2000\ng 3 2000\n"
    assert families(ExpositionParser(), page) == {"g": ([1.0, 2.0], 1)}
