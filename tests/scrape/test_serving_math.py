"""Counter rates, PromQL histogram_quantile and MLPerf throughput against hand-computed results."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.serving_math import (
    bucket_increases,
    extrapolated_increase,
    extrapolated_rate,
    histogram_mean,
    histogram_quantile,
    increase,
    merge_buckets,
    mlperf_throughput,
    rate,
)
from storage.quantile import bucket_quantile

INF = math.inf
# serving.md section 10's example page: TTFT and ITL buckets (cumulative, le -> count).
TTFT = {
    0.001: 0,
    0.005: 0,
    0.01: 0,
    0.02: 11,
    0.04: 200,
    0.06: 820,
    0.08: 1922,
    0.1: 3188,
    0.25: 12474,
    0.5: 18066,
    0.75: 19423,
    1.0: 19795,
    2.5: 19997,
    5.0: 20000,
    7.5: 20000,
    INF: 20000,
}
ITL = {
    0.01: 13503,
    0.025: 2394651,
    0.05: 5740702,
    0.075: 5988626,
    0.1: 5999718,
    0.15: 6000117,
    0.2: 6000117,
    INF: 6000117,
}


def test_increase_and_rate_count_a_reset_as_a_restart_from_zero():
    points = [(0, 10.0), (15_000, 20.0), (30_000, 5.0), (45_000, 15.0)]
    assert increase(points) == 25.0  # 10 before the reset, 5 + 10 after it
    assert rate(points) == pytest.approx(25 / 45)
    assert increase(points[:1]) is None and rate([(0, 1.0), (0, 2.0)]) is None


def test_extrapolated_increase_matches_prometheus():
    # increase(x[60s]) at t=60s with samples 15 s apart from t=10 s: extrapolated to both ends.
    points = [(10_000, 100.0), (25_000, 110.0), (40_000, 120.0), (55_000, 130.0)]
    assert extrapolated_increase(points, 0, 60_000) == pytest.approx(40.0)
    assert extrapolated_rate(points, 0, 60_000) == pytest.approx(40 / 60)
    # A counter is never extrapolated below zero: the start stops at its zero point (1.5 s back).
    low = [(10_000, 1.0), (25_000, 11.0), (40_000, 21.0), (55_000, 31.0)]
    assert extrapolated_increase(low, 0, 60_000) == pytest.approx(30 * 51.5 / 45)
    # A gap to the range start over 1.1 intervals extrapolates only half an interval.
    late = [(30_000, 100.0), (45_000, 110.0), (60_000, 120.0)]
    assert extrapolated_increase(late, 0, 60_000) == pytest.approx(20 * 37.5 / 30)


@pytest.mark.parametrize(("q", "expected"), [(0.5, 0.210), (0.9, 0.497), (0.99, 1.037)])
def test_histogram_quantile_reproduces_the_reference_ttft(q, expected):
    assert histogram_quantile(q, TTFT) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize(("q", "expected_ms"), [(0.5, 29.5), (0.9, 47.5), (0.99, 70.1)])
def test_histogram_quantile_reproduces_the_reference_itl(q, expected_ms):
    assert histogram_quantile(q, ITL) * 1000 == pytest.approx(expected_ms, abs=0.05)


def test_histogram_quantile_edge_rules():
    assert histogram_quantile(0.99, {1.0: 1, 2.0: 2, INF: 10}) == 2.0  # rank in +Inf: highest finite bound
    assert histogram_quantile(0.1, {0.0: 5, 1.0: 10, INF: 10}) == 0.0  # first bound <= 0 is the answer
    assert histogram_quantile(0.5, {1.0: 0, INF: 0}) is not None and math.isnan(
        histogram_quantile(0.5, {1.0: 0, INF: 0})
    )
    assert math.isnan(histogram_quantile(0.5, {1.0: 3, 2.0: 4}))  # no +Inf bucket
    assert math.isnan(histogram_quantile(0.5, {INF: 4}))  # fewer than 2 buckets
    assert histogram_quantile(-0.1, TTFT) == -INF and histogram_quantile(1.1, TTFT) == INF
    assert math.isnan(histogram_quantile(math.nan, TTFT))
    # Non-monotonic counts (scrapes of different moments) are raised to their predecessor first.
    assert histogram_quantile(0.75, {1.0: 2, 2.0: 1, 3.0: 4, INF: 4}) == pytest.approx(2.5)
    assert histogram_quantile(0.5, [(1.0, 1), (1.0, 1), (INF, 4)]) == pytest.approx(1.0)  # same bound: summed


@given(
    st.lists(
        st.tuples(st.floats(0.001, 1000), st.integers(0, 10_000)),
        min_size=1,
        max_size=8,
        unique_by=lambda b: b[0],
    ),
    st.floats(0, 1),
)
def test_histogram_quantile_agrees_with_the_store_reader(buckets, q):
    cumulative, total = [], 0
    for le, n in sorted(buckets):
        total += n
        cumulative.append((le, float(total)))
    cumulative.append((INF, float(total)))
    ours, store = histogram_quantile(q, cumulative), bucket_quantile(q, cumulative)
    assert ours == store or (math.isnan(ours) and math.isnan(store))


def test_bucket_increases_per_bucket_resets_and_merge_on_shared_bounds():
    window = [{0.1: 5, 1.0: 8, INF: 10}, {0.1: 7, 1.0: 12, INF: 15}, {0.1: 1, 1.0: 2, INF: 3}]
    assert bucket_increases(window) == {0.1: 3.0, 1.0: 6.0, INF: 8.0}
    assert bucket_increases(window[:1]) == {}
    merged = merge_buckets([{0.1: 1, 0.5: 2, INF: 3}, {0.1: 4, 1.0: 5, INF: 6}])
    assert merged == {0.1: 5, INF: 9}
    assert histogram_mean(5.0, 10.0) == 0.5 and math.isnan(histogram_mean(1.0, 0.0))


def test_mlperf_throughput_is_generated_tokens_over_wall_time():
    a = [(0, 1_000.0), (5_000, 80_000.0), (10_000, 151_000.0)]
    b = [(0, 5_000.0), (5_000, 80_000.0), (10_000, 70_000.0)]  # restarted between 5 s and 10 s
    assert mlperf_throughput([a, b]) == pytest.approx((150_000 + 145_000) / 10)
    # The rack claim: 72 GPUs at 15,651 tok/s each over a 40-minute run is ~1.127 M tok/s.
    run = [[(0, 0.0), (2_400_000, 15_651.0 * 2400)] for _ in range(72)]
    assert mlperf_throughput(run) == pytest.approx(1_126_872)
    assert mlperf_throughput([[(0, 1.0)]]) is None


def test_quantile_zero_over_an_empty_first_bucket_is_nan_as_in_promql():
    # Prometheus computes 0/0 in the first bucket here; the found example once divided by zero.
    assert math.isnan(histogram_quantile(0.0, [(1.0, 0), (2.0, 1), (math.inf, 1)]))
    assert histogram_quantile(0.0, [(1.0, 1), (2.0, 1), (math.inf, 1)]) == 0.0
