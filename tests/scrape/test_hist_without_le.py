"""A histogram bucket without a numeric `le` passes the parser (as in Prometheus) and the mapping skips it.

promparse.go checks no label, so a scrape keeps `x_bucket` without `le` or with `le="x"`; PromQL's
histogram_quantile then skips such a series (promql/functions.go: a bucket whose le does not parse is
dropped). collectors.mappings.common.histogram_totals does the same, never a KeyError or ValueError.
"""

from __future__ import annotations

from collectors.mappings.common import histogram_totals
from collectors.promtext import ExpositionParser
from collectors.series_counters import SeriesCounters

CLEAN = '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 5\nh_sum 7\nh_count 5\n'
BAD_BUCKETS = 'h_bucket 9\nh_bucket{le="x"} 11\n'


def totals(page: str, pages: int) -> list:
    series = SeriesCounters()
    out = []
    for tick in range(pages):
        scaled = page.replace("} 2\n", f"}} {2 + tick}\n").replace("} 5\n", f"}} {5 + tick}\n")
        les, counts, total = histogram_totals(ExpositionParser().parse(scaled)["h"], series, "h")
        out.append((list(zip(les, counts, strict=True)), total))
    return out


def test_buckets_without_a_numeric_le_are_skipped_like_histogram_quantile_does():
    dirty = CLEAN.replace("h_sum", BAD_BUCKETS + "h_sum")
    family = ExpositionParser().parse(dirty)["h"]
    assert len([s for s in family.samples if s.name == "h_bucket"]) == 4  # the parser keeps them
    assert totals(dirty, 3) == totals(CLEAN, 3)
    # The clean page's figures by hand: buckets 2 -> 3 -> 4 and 5 -> 6 -> 7 are running increases of
    # 0, 1, 2 from the first page; the sum stays 7 (increase 0).
    inf = float("inf")
    assert totals(CLEAN, 3) == [([(1.0, n), (inf, n)], 0.0) for n in (0.0, 1.0, 2.0)]
