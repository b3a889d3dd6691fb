"""A server's histogram plan (which samples are buckets with a bound, which are sums) is kept per endpoint
while a page holds the same series; a page whose series changed must be planned afresh.

Expected totals are worked by hand from Prometheus' rule (a series' first sample adds 0, then each
page adds its increase; only bounds every series has are kept).
"""

from __future__ import annotations

from collectors.mappings import map_serving
from collectors.promtext import ExpositionParser
from collectors.series_counters import SeriesCounters

NAME = "vllm:time_to_first_token_seconds"


def page(engine0: tuple[float, float], engine1: tuple[float, float], le1: str = "0.5") -> str:
    """Two engines' TTFT histograms: (count at le 0.5, count at +Inf) each; engine 1's lower bound `le1`."""
    lines = [f"# TYPE {NAME} histogram"]
    for engine, (low, total), le in (("0", engine0, "0.5"), ("1", engine1, le1)):
        lines += [
            f'{NAME}_bucket{{engine="{engine}",le="{le}"}} {low}',
            f'{NAME}_bucket{{engine="{engine}",le="+Inf"}} {total}',
            f'{NAME}_sum{{engine="{engine}"}} {total / 10}',
            f'{NAME}_count{{engine="{engine}"}} {total}',
        ]
    return "\n".join(lines) + "\n"


def ttft_rows(
    text: str, parser: ExpositionParser, series: SeriesCounters, ts: int
) -> list[tuple[float, int]]:
    frame = map_serving(text, "vllm-00", ts, engine="vllm", parser=parser, series=series)
    rows = frame.batches["serving_hist"].to_pylist()
    return [(r["le"], r["count"]) for r in rows if r["metric"] == "ttft"]


def test_a_bucket_whose_bound_changed_is_not_read_as_the_old_bucket() -> None:
    parser, series = ExpositionParser(), SeriesCounters()
    assert ttft_rows(page((1, 2), (1, 2)), parser, series, 1000) == [(0.5, 0), (float("inf"), 0)]
    # increases: le 0.5 by 2 (engine 0) + 1 (engine 1); +Inf by 3 + 2
    assert ttft_rows(page((3, 5), (2, 4)), parser, series, 2000) == [(0.5, 3), (float("inf"), 5)]
    assert ttft_rows(page((3, 6), (2, 4)), parser, series, 3000) == [(0.5, 3), (float("inf"), 6)]
    # Engine 1's lower bucket has no numeric `le` now (same names, same line count, other labels):
    # le 0.5 is no longer on every series and is left out; +Inf grows by 1 + 1.
    changed = page((4, 7), (9, 5), le1="half")
    assert ttft_rows(changed, parser, series, 4000) == [(float("inf"), 8)]
    # And back: le 0.5 kept counting engine 0 while left out (3 -> 4, now 5: 3 + 1 + 1) and engine 1's
    # series returns with its last value (2 -> 3: + 1); +Inf grows by 1 + 1.
    assert ttft_rows(page((5, 8), (3, 6)), parser, series, 5000) == [(0.5, 6), (float("inf"), 10)]
