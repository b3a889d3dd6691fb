"""Hand-built stores for the report's exactness tests, and the independent sums they are checked against.

A store is written by the real writer and compacted (hours, and days once complete), so the report
reads rollup buckets where they fit and raw rows elsewhere. The expected figures come from the raw
Parquet rows alone, through a Prometheus increase written here (never the code under test).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow.parquet as pq

from storage.frame import Frame
from storage.layout import read_manifest
from storage.writer import StoreWriter


def write_store(root: Path, frames: Iterable[Frame]) -> Path:
    """A store at `root` holding `frames`, with every complete hour (and day) compacted."""
    with StoreWriter(root, compaction="inline", flush_interval_s=600, grace_s=0) as writer:
        for frame in frames:
            writer.append(frame)
        writer.compact()
    return root


def raw_rows(store: Path, table: str, since: int, until: int) -> list[dict]:
    """The raw rows of `table` in [since, until] (with their time as `t`, epoch ms), read from the
    Parquet files the manifest lists."""
    rows = []
    for entry in read_manifest(store).of(table):
        for r in pq.read_table(store / entry.path).to_pylist():
            t = round(r["ts"].timestamp() * 1000)
            if since <= t <= until:
                rows.append(r | {"t": t})
    return rows


def per_series(rows: list[dict], keys: Sequence[str], column: str) -> dict[tuple, tuple[float, float]]:
    """Per series with two or more values: (increase, seconds spanned) over its valued samples in time
    order; a drop means the counter restarted from 0, so the new value is the increase."""
    series: dict[tuple, list[tuple[int, int]]] = {}
    for r in rows:
        if r[column] is not None:
            series.setdefault(tuple(r[k] for k in keys), []).append((r["t"], r[column]))
    out = {}
    for key, points in series.items():
        points.sort()
        if len(points) < 2:
            continue
        inc = 0
        for (_, prev), (_, value) in itertools.pairwise(points):
            inc += value - prev if value >= prev else value
        out[key] = (inc, (points[-1][0] - points[0][0]) / 1000)
    return out


def first_firing(samples: Sequence[tuple[int, Sequence[int | None]]], on: int, window_ms: int) -> int | None:
    """When the link_errors rule first fired over one link's samples (time, error counters), oldest
    first: the earliest growth sample of the first window of `window_ms` holding `on` growth samples.

    A sample grew when some counter rose from the sample before (or restarted to a value above 0);
    a counter missing at either sample does not count.
    """
    grew = [
        t
        for (_, before), (t, now) in itertools.pairwise(samples)
        if any(_step(b, n) > 0 for b, n in zip(before, now, strict=True))
    ]
    for i, t in enumerate(grew):
        inside = [g for g in grew[: i + 1] if t - window_ms <= g]
        if len(inside) >= on:
            return inside[0]
    return None


def _step(before: int | None, now: int | None) -> int:
    if before is None or now is None:
        return 0
    return now - before if now >= before else now
