"""A serving_hist batch's histograms found once per rack layout, not once per frame (the serving view)."""

from __future__ import annotations

import pyarrow as pa

Layout = list[tuple[tuple[str, str], tuple[float, ...], slice | tuple[int, ...]]]
"""A serving_hist batch's histograms: (endpoint, metric), bucket bounds, and the rows of their counts."""


class HistLayouts:
    """The histogram layout of the newest serving_hist batch, reused while its labels stay the same.

    Every tick of a rack carries the same endpoints, metrics and bucket bounds in the same rows (the
    head stores them as one array, storage.head.share_columns): grouping 7,800 rows into 216 histograms
    once, not once a frame, leaves a frame only its counts to read.
    """

    def __init__(self) -> None:
        """No layout yet."""
        self._labels: tuple[pa.Array, ...] = ()
        self._layout: Layout = []

    def of(self, hist: pa.RecordBatch) -> Layout:
        """The layout of `hist`: the cached one if its label columns equal the cached labels."""
        labels = tuple(hist.column(c) for c in ("endpoint", "metric", "le"))
        same = len(labels) == len(self._labels) and all(
            a.equals(b) for a, b in zip(labels, self._labels, strict=True)
        )
        if not same:
            self._labels, self._layout = labels, _group(*(c.to_pylist() for c in labels))
        return self._layout


def _group(endpoints: list[str], metrics: list[str], bounds: list[float]) -> Layout:
    """Rows grouped by (endpoint, metric), bounds in first-seen order (a repeated bound: its last row)."""
    rows: dict[tuple[str, str], dict[float, int]] = {}
    for at, (endpoint, metric, le) in enumerate(zip(endpoints, metrics, bounds, strict=True)):
        rows.setdefault((endpoint, metric), {})[le] = at
    layout: Layout = []
    for key, by_bound in rows.items():
        at = tuple(by_bound.values())
        run = at == tuple(range(at[0], at[0] + len(at)))
        layout.append((key, tuple(by_bound), slice(at[0], at[0] + len(at)) if run else at))
    return layout
