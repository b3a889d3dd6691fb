"""How compacted files are laid out: each table's schema, sort keys, delta-encoded counters and time band.

The compactor writes by these, and export cuts and re-bands by them (monitor/export.py, export_cut.py).
"""

from __future__ import annotations

import pyarrow as pa

from storage.layout import HOUR_MS
from storage.rollups import ROLLUP_SOURCES, ROLLUP_STEPS, ROLLUP_TABLES, rollup_name
from storage.schemas import COUNTERS, SORT_KEYS, TABLES

RAW_BAND_MS = 600_000
"""Time band of raw tables' compacted files: 600 samples per series at 1 Hz, a few per short window."""
HOUR_BANDED = frozenset({"serving", "events", "processes", "host"})
"""Raw tables with a few rows a tick, banded by the hour instead: a 10-minute band of them is far below a
row group (serving: 72 endpoints x 600 = 43 k rows), so it skips little, while every band boundary
restarts each series' delta run (one wide miniblock per series and band). Serving's hour file is 9 %
smaller banded by the hour (docs/benchmarks.md, store size)."""
SHORT_BAND_MS = 120_000
SHORT_BANDED = frozenset({"nvlink", "serving_hist"})
"""The big raw tables, banded by 2 minutes: a window's edges (a report's, an export's cut) read only the
row groups whose band they touch, and a 10-minute band of them is many row groups (nvlink 778 k rows,
serving_hist 4.7 M). The head edge of a 1 h report reads 2.7 times less CPU of them (serving_hist 0.18 ->
0.07 s, nvlink 0.05 -> 0.02 s); serving_hist's hour file is 5 % smaller (its buckets' deltas are
smaller within 2 minutes), nvlink's 0.7 % larger (docs/benchmarks.md, sixth pass)."""
BAND_SAMPLES = 600
"""Rollup bands hold this many buckets per series (10 h of 1-minute buckets), like raw bands at 1 Hz."""


def table_schema(table: str) -> pa.Schema:
    """The schema of a raw or rollup table."""
    return TABLES[table] if table in TABLES else ROLLUP_TABLES[table]


def table_layout(table: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """(sort keys, delta-encoded counter columns) of a raw or rollup table."""
    if table in TABLES:
        return SORT_KEYS[table], COUNTERS[table]
    raw = ROLLUP_SOURCES[table]
    counters = frozenset(f"{c}_{end}" for c in COUNTERS[raw] for end in ("first", "last"))
    return SORT_KEYS[raw], counters


def table_band_ms(table: str) -> int:
    """The time band (ms) that a raw or rollup table's compacted files are sorted by first."""
    if table in TABLES:
        return HOUR_MS if table in HOUR_BANDED else SHORT_BAND_MS if table in SHORT_BANDED else RAW_BAND_MS
    raw = ROLLUP_SOURCES[table]
    step = next(ms for step, ms in ROLLUP_STEPS.items() if rollup_name(raw, step) == table)
    return BAND_SAMPLES * step
