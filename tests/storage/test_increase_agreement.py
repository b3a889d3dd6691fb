"""The one counter rule: its SQL (reader, rollups) and Python (live view, alerts) forms agree with each
other and with Prometheus' rule written independently here, on random per-series streams."""

from __future__ import annotations

import math

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import counter_rates
from storage.frame import batch_from_rows
from storage.increase import SlidingRate, increase, rate, step, step_arrow, step_sql
from storage.pieces import chain, conformed
from storage.rollups import compute_rollup

T0 = 1_750_000_000_000
TICK_MS = 7_000  # not a divisor of a minute: buckets hold 8 or 9 samples, edges fall anywhere

Stream = list[float | None]
"""One series' value per tick: None where the series has no valued sample (a gap, a NaN, absent)."""


def prometheus_increase(values: Stream) -> float | None:
    """Prometheus' form (promql/functions.go): last - first, plus every value seen before a drop."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    if len(kept) < 2:
        return None
    result = kept[-1] - kept[0]
    for k in range(1, len(kept)):
        if kept[k] < kept[k - 1]:
            result += kept[k - 1]
    return result


@st.composite
def streams(draw: st.DrawFn) -> list[list[int | None]]:
    """1..4 series over up to 40 ticks: growth, resets to small values, gaps, late starts, early ends."""
    ticks = draw(st.integers(2, 40))
    out = []
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, ticks - 1))
        end = draw(st.integers(start, ticks))
        value = draw(st.integers(0, 5_000_000))  # a series may first appear at 5 M
        series: list[int | None] = []
        for tick in range(ticks):
            kind = draw(st.sampled_from(["grow"] * 6 + ["reset", "gap", "flat"]))
            if kind == "reset":
                value = draw(st.integers(0, 1_000))
            elif kind == "grow":
                value += draw(st.integers(1, 100_000))
            series.append(None if kind == "gap" or not start <= tick < end else value)
        out.append(series)
    return out


def serving_rows(series: list[list[int | None]]) -> pa.Table:
    """The streams as serving rows, one series per endpoint; a tick without a value has no row."""
    rows = [
        {"ts": T0 + tick * TICK_MS, "endpoint": f"e{i}", "engine": "vllm", "state": 0, "generation_tokens": v}
        for i, values in enumerate(series)
        for tick, v in enumerate(values)
        if v is not None
    ]
    return pa.Table.from_batches([batch_from_rows("serving", rows)])


def sql_increases(table: pa.Table) -> dict[str, tuple[float, float]]:
    """(increase, seconds) per endpoint by the reader's SQL builders over the raw rows."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("rows", table)

    def relation(_table: str, lo: int, hi: int) -> str:
        return f"(SELECT * FROM rows WHERE epoch_ms(ts) BETWEEN {lo} AND {hi})"

    span = counter_rates.Span("raw", T0, T0 + 100 * TICK_MS)
    pieces = [counter_rates.raw_pieces(relation, "serving", "generation_tokens", [span], None)]
    arrow = [conformed(con.sql(p).to_arrow_table(), "serving") for p in pieces]
    rated = chain(arrow, "serving", ["generation_tokens"], None)
    return {r["endpoint"]: (r["increase"], r["seconds"]) for r in rated.to_pylist()}


@settings(max_examples=150, deadline=None)
@given(streams())
def test_sql_python_and_prometheus_agree_per_series(series: list[list[int | None]]) -> None:
    by_sql = sql_increases(serving_rows(series))
    for i, values in enumerate(series):
        points = [(T0 + tick * TICK_MS, v) for tick, v in enumerate(values)]
        expected = prometheus_increase(values)
        assert increase(points) == expected  # type: ignore[arg-type]
        if expected is None:
            assert f"e{i}" not in by_sql
            continue
        got, seconds = by_sql[f"e{i}"]
        assert got == expected
        kept = [t for t, v in points if v is not None]
        assert seconds * 1000 == kept[-1] - kept[0]
        assert rate(points) == (expected / seconds if seconds else None)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(streams())
def test_rollup_bucket_increase_equals_the_rule_over_its_samples(series: list[list[int | None]]) -> None:
    rolled = compute_rollup("serving", 60_000, serving_rows(series)).to_pylist()
    valued = [(i, t) for i, values in enumerate(series) for t, v in enumerate(values) if v is not None]
    assert len(rolled) == len({(i, (T0 + t * TICK_MS) // 60_000) for i, t in valued})
    for r in rolled:
        i = int(r["endpoint"][1:])
        start = r["ts"].timestamp() * 1000
        inside = [v for tick, v in enumerate(series[i]) if start <= T0 + tick * TICK_MS < start + 60_000]
        assert r["generation_tokens_inc"] == (prometheus_increase(inside) or 0)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.none(), st.integers(0, 10**12)),
    st.one_of(st.none(), st.integers(0, 10**12), st.just(math.nan)),
)
def test_step_sql_step_arrow_and_step_agree(prev: int | None, value: float | None) -> None:
    sql_value = "NULL" if value is None else ("'NaN'::DOUBLE" if math.isnan(value) else f"{value}::BIGINT")
    sql_prev = "NULL" if prev is None else f"{prev}::BIGINT"
    by_sql = duckdb.sql(f"SELECT {step_sql(sql_value, sql_prev)}").fetchall()[0][0]
    by_python = step(prev, value)
    as_arrow = step_arrow(pa.array([value], pa.float64()), pa.array([prev], pa.float64()))[0].as_py()
    if prev is None:
        assert by_sql == 0 and by_python is None  # a first sample: nothing counted on either side
        assert as_arrow == 0
    elif value is None:
        assert by_sql is None and by_python is None and as_arrow is None
    elif math.isnan(value):
        # SQL never sees a NaN counter (stored counters are integers); Python skips it as a gap.
        assert by_python is None
    else:
        expected = value - prev if value >= prev else value
        assert by_sql == expected and by_python == expected and as_arrow == expected


def check_sliding(
    values: list[float | None], gaps: list[int], window_ms: int, recent_ms: int, exact: bool
) -> None:
    """SlidingRate against rate() over the window's points, recomputed from scratch after each sample."""
    counter = SlidingRate(window_ms)
    points: list[tuple[int, float | None]] = []
    t = T0
    for value, gap in zip(values, gaps, strict=False):
        t += gap
        counter.add(t, value)
        points = [p for p in [*points, (t, value)] if p[0] >= t - window_ms]
        assert counter.oldest_ms == points[0][0]
        for since in (None, t - recent_ms):
            got = counter.rate(since_ms=since)
            want = rate([p for p in points if since is None or p[0] >= since])  # type: ignore[arg-type]
            if exact or got is None or want is None:
                assert got == want
            else:
                assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


GAPS = st.lists(st.integers(1, 30_000), min_size=120, max_size=120)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.just(math.nan), st.integers(0, 10**12).map(float), st.integers(0, 10**6)),
        min_size=1,
        max_size=120,
    ),
    gaps=GAPS,
    window_ms=st.integers(1_000, 120_000),
    recent_ms=st.integers(0, 60_000),
)
def test_a_sliding_rate_equals_rate_over_its_window_after_every_sample(
    values: list[float | None], gaps: list[int], window_ms: int, recent_ms: int
) -> None:
    """Whole-number counters (tokens): equal to the bit after every sample, with resets, NaNs, gaps and
    samples leaving the window, though the window's sum is kept running, not re-added."""
    check_sliding(values, gaps, window_ms, recent_ms, exact=True)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)), min_size=1, max_size=120),
    gaps=GAPS,
    window_ms=st.integers(1_000, 120_000),
)
def test_a_sliding_rate_of_fractional_counters_stays_within_rounding(
    values: list[float | None], gaps: list[int], window_ms: int
) -> None:
    """Seconds counters: the running sum differs from a fresh one by rounding only (it is re-added once
    per window's worth of samples)."""
    check_sliding(values, gaps, window_ms, 10_000, exact=False)
