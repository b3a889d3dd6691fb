"""Compacted files carry only the footer their readers use (ts and key statistics, no ARROW:schema copy),
and still read back as exactly the rows and Arrow types that were written."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.compactor import table_layout, table_schema
from storage.layout import read_manifest
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
