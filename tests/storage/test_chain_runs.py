"""storage.pieces condenses runs of rows before chaining (runs_condensed, condensed): the answer is the
same whatever order the rows come in (the store's (keys, time) order, shuffled, interleaved, stepped).

Expected values are Prometheus' rule written per series in this file's loop (test_increase_agreement's
prometheus_increase and a per-step loop here), over the samples themselves, never through storage.pieces.
"""

from __future__ import annotations

import itertools
import random

import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from storage import pieces as P
from tests.storage.test_increase_agreement import prometheus_increase, streams

T0 = 1_750_000_000_000
TICK_MS = 7_000
STEP_MS = 60_000
Sample = tuple[str, int, float]
"""(endpoint, t in epoch ms, value)."""


def samples_of(series: list[list[int | None]]) -> list[Sample]:
    """Every valued sample, in (series, time) order: the order the store's files hand rows back in."""
    return [
        (f"e{i}", T0 + tick * TICK_MS, float(v))
        for i, values in enumerate(series)
        for tick, v in enumerate(values)
        if v is not None
    ]


def sample_table(samples: list[Sample]) -> pa.Table:
    """The samples as one-sample pieces of serving's generation_tokens, in the order given."""
    rows = pa.table(
        {
            "endpoint": pa.array([s[0] for s in samples], pa.string()),
            "engine": pa.array(["vllm"] * len(samples), pa.string()),
            "t": pa.array([s[1] for s in samples], pa.int64()),
            "generation_tokens": pa.array([s[2] for s in samples], pa.float64()),
        }
    )
    return P.sample_pieces(rows, "serving", ["generation_tokens"])[0]


def expected_per_step(
    samples: list[Sample], step_ms: int | None
) -> dict[tuple[str, int], tuple[float, float]]:
    """(increase, seconds) per (endpoint, step start): each pair of neighbouring samples counted by
    Prometheus' rule in the later sample's step; a step without a pair ending in it has no row."""
    out: dict[tuple[str, int], tuple[float, float]] = {}
    for endpoint in sorted({s[0] for s in samples}):
        kept = sorted((t, v) for e, t, v in samples if e == endpoint)
        for (ta, va), (tb, vb) in itertools.pairwise(kept):
            step = tb // step_ms * step_ms if step_ms else 0
            inc, seconds = out.get((endpoint, step), (0.0, 0.0))
            out[(endpoint, step)] = (inc + (vb - va if vb >= va else vb), seconds + (tb - ta) / 1000)
    return out


def bucket(own: list[Sample]) -> dict[str, object]:
    """One piece of neighbouring samples of a series, its increase inside by the rule (a rollup bucket)."""
    inc = sum(b[2] - a[2] if b[2] >= a[2] else b[2] for a, b in itertools.pairwise(own))
    first, last = own[0], own[-1]
    return {
        "endpoint": first[0],
        "engine": "vllm",
        "counter": "generation_tokens",
        "t0": first[1],
        "v0": first[2],
    } | {
        "t1": last[1],
        "v1": last[2],
        "inc": float(inc),
    }


def chained(tables: list[pa.Table], step_ms: int | None) -> dict[tuple[str, int], tuple[float, float]]:
    result = P.chain(tables, "serving", ["generation_tokens"], step_ms)
    steps = result.column("ts").cast(pa.int64()).to_pylist() if step_ms else [0] * result.num_rows
    return {
        (r["endpoint"], step // 1000 if step_ms else 0): (r["increase"], r["seconds"])
        for r, step in zip(result.to_pylist(), steps, strict=True)
    }


def arrangements(samples: list[Sample], seed: int) -> dict[str, list[list[Sample]]]:
    """The same samples in several orders, as one or more piece tables."""
    rng = random.Random(seed)
    shuffled = samples[:]
    rng.shuffle(shuffled)
    half = len(samples) // 2
    # Two halves of a series' samples in alternating tables: each table sorted, their times interleaved.
    odd = [s for k, s in enumerate(samples) if k % 2]
    even = [s for k, s in enumerate(samples) if not k % 2]
    return {
        "sorted": [samples],
        "shuffled": [shuffled],
        "halves": [samples[half:], samples[:half]],
        "interleaved": [odd, even],
        "twice over": [samples[:half] + samples[half:][::-1]],
    }


@pytest.fixture(autouse=True)
def condense_every_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Condense tables of any size (the product starts at CONDENSE_FROM_ROWS rows)."""
    monkeypatch.setattr(P, "CONDENSE_FROM_ROWS", 2)


@settings(max_examples=120, deadline=None)
@given(streams(), st.sampled_from([None, STEP_MS]), st.integers(0, 1000))
def test_any_order_chains_to_the_rule_per_series(
    series: list[list[int | None]], step_ms: int | None, seed: int
) -> None:
    samples = samples_of(series)
    expected = expected_per_step(samples, step_ms)
    for name, parts in arrangements(samples, seed).items():
        got = chained([sample_table(p) for p in parts], step_ms)
        assert got.keys() == expected.keys(), name
        for key, (inc, seconds) in expected.items():
            assert got[key][0] == pytest.approx(inc, rel=1e-12), (name, key)
            assert got[key][1] == pytest.approx(seconds), (name, key)
    if step_ms is None:
        for i, values in enumerate(series):
            want = prometheus_increase(values)
            assert (f"e{i}", 0) not in expected if want is None else expected[(f"e{i}", 0)][0] == want


def test_runs_that_interleave_in_time_are_not_trusted() -> None:
    """e0's rows come as t0, t2, then e1, then t1 (a reset between t1 and t2): the run (t0, t2) would
    hide t1. Chained as the rule says: 100 -> 5 (reset, +5) -> 7 (+2) = 7; the run alone gives 7 - 100
    read as a reset (+7), then t1 inside it counted again."""
    t = [T0, T0 + 1000, T0 + 2000]
    samples = [
        ("e0", t[0], 100.0),
        ("e0", t[2], 7.0),
        ("e1", t[0], 1.0),
        ("e1", t[1], 2.0),
        ("e0", t[1], 5.0),
    ]
    got = chained([sample_table(samples)], None)
    assert got[("e0", 0)] == (7.0, 2.0)
    assert got[("e1", 0)] == (1.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(streams(), st.integers(0, 1000), st.integers(2, 6))
def test_condensed_pieces_chain_to_the_rule(series: list[list[int | None]], seed: int, width: int) -> None:
    """Multi-sample pieces (as rollup buckets are) condensed in any order, then chained, equal the rule."""
    samples = samples_of(series)
    expected = expected_per_step(samples, None)
    # Pieces of `width` neighbouring samples of a series, each chained inside as a bucket's inc is.
    assume(samples)
    buckets = []
    for endpoint in sorted({s[0] for s in samples}):
        own = [s for s in samples if s[0] == endpoint]
        buckets += [bucket(own[k : k + width]) for k in range(0, len(own), width)]
    rng = random.Random(seed)
    for order in ("sorted", "shuffled"):
        if order == "shuffled":
            rng.shuffle(buckets)
        one = P.condensed(
            pa.Table.from_pylist(buckets, P.piece_schema("serving")), "serving", ["generation_tokens"]
        )
        assert one.num_rows == len({s[0] for s in samples})
        got = chained([one], None)
        assert got.keys() == expected.keys()
        for key, (inc, seconds) in expected.items():
            assert got[key][0] == pytest.approx(inc, rel=1e-12), (order, key)
            assert got[key][1] == pytest.approx(seconds), (order, key)
