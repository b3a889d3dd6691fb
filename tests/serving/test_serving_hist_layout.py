"""The serving view reads each frame's histograms through a layout found once per rack (HistLayouts):
the buckets it reads are the rows' own, checked against hand-written expectations, also when a frame's
rows come in another order, repeat a bound, or belong to other servers than the frame before."""

from __future__ import annotations

import math

from monitor.view.serving import ServingBuilder
from storage.frame import Frame, batch_from_columns

T0_MS = 1_790_000_000_000
INF = math.inf


def hist_frame(ts_ms: int, rows: list[tuple[str, str, float, int]]) -> Frame:
    """A frame of serving_hist rows (endpoint, metric, le, count), in the order given."""
    endpoints, metrics, bounds, counts = (list(c) for c in zip(*rows, strict=True))
    batch = batch_from_columns(
        "serving_hist",
        {"ts": [ts_ms] * len(rows), "endpoint": endpoints, "metric": metrics, "le": bounds, "count": counts},
    )
    return Frame(ts_ms, {"serving_hist": batch})


def hists_read(builder: ServingBuilder, frame: Frame) -> dict[tuple[str, str], dict[float, float]]:
    return builder._summary(frame, whole=True).hists


def test_each_frame_reads_its_own_counts_through_a_layout_kept_while_the_labels_stay() -> None:
    builder = ServingBuilder()
    # Rows interleaved (a's ttft split by b's), and a repeated bound (the last row's count wins, as a
    # dict built row by row keeps it).
    rows = [
        ("a", "ttft", 0.1, 1),
        ("b", "ttft", 0.1, 5),
        ("a", "ttft", INF, 3),
        ("b", "ttft", INF, 7),
        ("b", "ttft", INF, 8),
    ]
    first = hists_read(builder, hist_frame(T0_MS, rows))
    assert first == {("a", "ttft"): {0.1: 1, INF: 3}, ("b", "ttft"): {0.1: 5, INF: 8}}
    assert list(first[("a", "ttft")]) == [0.1, INF]
    # The same labels a tick later: only the counts are new.
    later = [(e, m, le, c + 10) for e, m, le, c in rows]
    assert hists_read(builder, hist_frame(T0_MS + 1000, later)) == {
        ("a", "ttft"): {0.1: 11, INF: 13},
        ("b", "ttft"): {0.1: 15, INF: 18},
    }
    # Same row count, other labels (a server replaced by another, a bound moved): a new layout.
    other = [
        ("c", "ttft", 0.1, 2),
        ("b", "ttft", 0.1, 5),
        ("c", "ttft", INF, 4),
        ("b", "ttft", 0.5, 6),
        ("b", "ttft", INF, 9),
    ]
    assert hists_read(builder, hist_frame(T0_MS + 2000, other)) == {
        ("c", "ttft"): {0.1: 2, INF: 4},
        ("b", "ttft"): {0.1: 5, 0.5: 6, INF: 9},
    }
