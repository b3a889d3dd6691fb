"""Compacted files carry only the footer their readers use (ts and key statistics, no ARROW:schema copy),
measure their encodings on enough rows, and still read back as exactly the rows and types written."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.bands import table_layout, table_schema
from storage.layout import read_manifest
from storage.schemas import TS
from storage.segments import COMPACTED_ZSTD_LEVEL, measured_encodings, write_atomic
from storage.writer import StoreWriter
from tests.storage.synth import T0, frame, gpu_batch

STEP_MS = 60_000
TICKS = 150
"""Two whole hours at a tick a minute (two gpu hour files with their rollups) and the open third."""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layout") / "s"
    with StoreWriter(root, flush_interval_s=600, compaction="inline", grace_s=0) as writer:
        for tick in range(TICKS):
            writer.append(frame(tick, STEP_MS))
    return root


def compacted(store: Path) -> list[tuple[str, Path]]:
    files = [(f.table, store / f.path) for f in read_manifest(store).files if f.level in ("hour", "day")]
    assert {t for t, _ in files} >= {"gpu", "gpu_1m", "gpu_1h"}, files
    return files


def test_footers_keep_statistics_of_ts_and_keys_only(store: Path) -> None:
    for table, path in compacted(store):
        meta = pq.ParquetFile(path).metadata
        keys = {"ts", *table_layout(table)[0]}
        for rg in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                column = meta.row_group(rg).column(c)
                has = column.statistics is not None and column.statistics.has_min_max
                assert has == (column.path_in_schema in keys), (path.name, column.path_in_schema)
        assert b"ARROW:schema" not in (meta.metadata or {}), path.name


def test_compacted_files_read_back_with_the_store_types(store: Path) -> None:
    for table, path in compacted(store):
        assert pq.read_table(path).schema.equals(table_schema(table)), path.name


def test_hour_files_hold_exactly_the_rows_written(store: Path) -> None:
    hours = [p for t, p in compacted(store) if t == "gpu"]
    got = pa.concat_tables(pq.read_table(p) for p in hours).sort_by(
        [("ts", "ascending"), ("gpu", "ascending")]
    )
    # The rows synth made for the two compacted hours, built again here: the independent expectation.
    ticks = [t for t in range(TICKS) if T0 + t * STEP_MS < T0 + 2 * 3_600_000]
    schema = table_schema("gpu")
    want = pa.Table.from_batches([gpu_batch(T0 + t * STEP_MS, t) for t in ticks]).cast(schema)
    assert got.num_rows == want.num_rows
    assert got.equals(want)


def noisy_levels(ticks: int, first_tick: int, seed: int) -> pa.Table:
    """72 series of a gauge at its own level with +-300 noise, in (gpu, ts) order like a band."""
    rng = random.Random(seed)
    ts, gpu, mem = [], [], []
    for g in range(72):
        for t in range(first_tick, first_tick + ticks):
            ts.append(T0 + t * 1000)
            gpu.append(g)
            mem.append(100_000 + g * 1_000 + rng.randrange(-300, 300))
    columns = [pa.array(ts, pa.int64()).cast(TS), pa.array(gpu, pa.int16()), pa.array(mem, pa.int32())]
    return pa.table(columns, schema=NOISY)


NOISY = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("gpu", pa.int16(), nullable=False),
        pa.field("mem", pa.int32()),
    ]
)


def test_encodings_are_measured_past_a_tiny_first_band(tmp_path: Path) -> None:
    # A day file whose first band holds one tick: on those 72 rows delta encoding looks best, on the
    # thousands after it byte-stream-split is (the premise, checked here so the test means something).
    tiny, rest = noisy_levels(1, 0, seed=1), noisy_levels(2_000, 1, seed=2)
    assert measured_encodings(tiny, NOISY, COMPACTED_ZSTD_LEVEL)[0]["mem"] == "DELTA_BINARY_PACKED"
    assert measured_encodings(rest, NOISY, COMPACTED_ZSTD_LEVEL)[0]["mem"] == "BYTE_STREAM_SPLIT"
    entry = write_atomic(
        tmp_path,
        "t/day.parquet",
        [tiny, rest],
        table="t",
        level="day",
        schema=NOISY,
        keys=("gpu",),
        counters=frozenset(),
    )
    meta = pq.ParquetFile(tmp_path / entry.path).metadata
    mem = meta.schema.names.index("mem")
    for rg in range(meta.num_row_groups):
        assert "BYTE_STREAM_SPLIT" in meta.row_group(rg).column(mem).encodings
    assert pq.read_table(tmp_path / entry.path).equals(pa.concat_tables([tiny, rest]))
