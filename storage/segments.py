"""Sealed Parquet files: sorted, per-column encodings, written atomically (tmp, fsync, rename, fsync dir).

The encodings follow the measurements in shared/reference/storage.md: DELTA_BINARY_PACKED for the
time column and counters (monotonic, so deltas are tiny), dictionary for small integers and strings
(few distinct values), BYTE_STREAM_SPLIT for floats, zstd level 3 on top. Rows are sorted by
(entity keys, ts) so neighbouring values belong to one series.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from storage.layout import TMP_SUFFIX, FileEntry, fsync_dir

ROW_GROUP_ROWS = 131_072
"""DuckDB's guidance: ~100 k+ rows per row group; smaller groups let readers skip by gpu."""
MERGE_CHUNK_ROWS = 2_000_000
"""Rows sorted in memory at once while merging; bounds a daily nvlink merge to a few hundred MB."""
ZSTD_LEVEL = 3

DELTA_ALWAYS = frozenset({"ts", "power_mw", "power_limit_mw"})
"""Non-counter columns that still change smoothly enough for delta encoding to win."""


def column_encodings(schema: pa.Schema, counters: frozenset[str]) -> tuple[dict[str, str], list[str]]:
    """(column_encoding, use_dictionary) for pq.ParquetWriter.

    Args:
        schema: the table's schema.
        counters: its counter columns (delta-encoded).

    Returns:
        The explicit encodings by column, and the columns to dictionary-encode.
    """
    encodings: dict[str, str] = {}
    dictionary: list[str] = []
    for f in schema:
        t = f.type
        integer_like = pa.types.is_integer(t) or pa.types.is_timestamp(t)
        if integer_like and (f.name in counters or f.name in DELTA_ALWAYS):
            encodings[f.name] = "DELTA_BINARY_PACKED"
        elif pa.types.is_floating(t) and f.name != "le":
            encodings[f.name] = "BYTE_STREAM_SPLIT"
        else:
            dictionary.append(f.name)
    return encodings, dictionary


def sort_table(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Rows ordered by (keys..., ts)."""
    order = [(k, "ascending") for k in (*keys, "ts")]
    return table.sort_by(order) if table.num_rows > 1 else table


def _writer(path: Path, schema: pa.Schema, keys: Sequence[str], counters: frozenset[str]) -> pq.ParquetWriter:
    encodings, dictionary = column_encodings(schema, counters)
    return pq.ParquetWriter(
        path,
        schema,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=dictionary,
        column_encoding=encodings,
        sorting_columns=[pq.SortingColumn(schema.get_field_index(k)) for k in (*keys, "ts")],
        write_statistics=True,
    )


def write_atomic(
    root: Path,
    relpath: str,
    chunks: Iterable[pa.Table],
    *,
    table: str,
    level: str,
    schema: pa.Schema,
    keys: Sequence[str],
    counters: frozenset[str],
) -> FileEntry:
    """Write sorted rows to root/relpath atomically and describe the new file.

    Args:
        root: the store directory.
        relpath: the final path, relative to root.
        chunks: tables already sorted and in key order, written one after the other.
        table: the table name recorded in the entry.
        level: the entry's level (see layout.LEVELS).
        schema: the file's schema.
        keys: the entity key columns (recorded as sorting metadata).
        counters: delta-encoded counter columns.

    Returns:
        The FileEntry for the manifest.
    """
    final = root / relpath
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + TMP_SUFFIX)
    rows, lo, hi = 0, None, None
    try:
        with open(tmp, "wb") as fh:
            writer = _writer(fh, schema, keys, counters)  # type: ignore[arg-type]
            try:
                for chunk in chunks:
                    if not chunk.num_rows:
                        continue
                    writer.write_table(chunk.cast(schema), row_group_size=ROW_GROUP_ROWS)
                    bounds = pc.min_max(chunk.column("ts"))
                    cmin, cmax = bounds["min"].value, bounds["max"].value
                    lo = cmin if lo is None or cmin < lo else lo
                    hi = cmax if hi is None or cmax > hi else hi
                    rows += chunk.num_rows
            finally:
                writer.close()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)
    return FileEntry(
        table=table,
        path=relpath,
        level=level,
        rows=rows,
        min_ts=_epoch_ms(lo),
        max_ts=_epoch_ms(hi),
        bytes=final.stat().st_size,
    )


def _epoch_ms(value: object) -> int:
    if value is None:
        return 0
    return int(pa.scalar(value, type=pa.timestamp("ms", tz="UTC")).cast(pa.int64()).as_py())


def merged_chunks(paths: Sequence[Path], schema: pa.Schema, keys: Sequence[str]) -> Iterable[pa.Table]:
    """The rows of several files, sorted by (keys, ts), as a lazy sequence of bounded chunks.

    Files are split by the first key's values so a day of nvlink rows is never sorted at once;
    each chunk is read with a filter that Parquet statistics turn into row-group skips.
    """
    dataset = ds.dataset([str(p) for p in paths], schema=schema, format="parquet")
    if not keys:
        return [sort_table(dataset.to_table(), keys)]
    counts = dataset.to_table(columns=[keys[0]]).column(0).value_counts()
    pairs = sorted(zip(counts.field(0).to_pylist(), counts.field(1).to_pylist(), strict=True))
    groups: list[list[object]] = [[]]
    rows = 0
    for value, n in pairs:
        if rows and rows + n > MERGE_CHUNK_ROWS:
            groups.append([])
            rows = 0
        groups[-1].append(value)
        rows += n
    return _Chunks(dataset, keys, groups)


class _Chunks:
    """Iterates sorted chunks of a dataset, one group of first-key values at a time."""

    def __init__(self, dataset: ds.Dataset, keys: Sequence[str], groups: list[list[object]]) -> None:
        self._dataset, self._keys, self._groups = dataset, keys, groups

    def __iter__(self) -> Iterator[pa.Table]:
        """Sorted tables, in first-key order."""
        field = self._keys[0]
        for values in self._groups:
            if not values:
                continue
            filt = pc.field(field).isin(pa.array(values, type=self._dataset.schema.field(field).type))
            yield sort_table(self._dataset.to_table(filter=filt), self._keys)
