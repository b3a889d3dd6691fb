"""Rows in the store's file order: sorted by (keys, ts), banded by time, merged from several files.

Compacted files are sorted by (time band, entity keys, ts), a band being ts // band_ms, with every row
group inside one band (storage.segments writes them). These functions put rows in that order: for a
table in memory (banded_chunks, sort_table; neither sorts rows already in order) and for files merged
in bounded chunks (merged_chunks).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import pyarrow.dataset as ds

MERGE_CHUNK_ROWS = 2_000_000
"""Rows sorted in memory at once while merging; bounds a daily nvlink merge to a few hundred MB."""


def sort_table(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Rows ordered by (keys..., ts); a table already in that order is returned as it is."""
    if table.num_rows <= 1 or in_order([table.column(k) for k in (*keys, "ts")]):
        return table
    return table.sort_by([(k, "ascending") for k in (*keys, "ts")])


def in_order(columns: Sequence[pa.Array | pa.ChunkedArray]) -> bool:
    """Whether the rows are already in ascending lexicographic order of `columns` (ties allowed).

    A pass over adjacent rows per column, where a multi-key sort is O(n log n) with a gather of
    every column after it: rows read back from one banded file (an export cut, a merge's band)
    usually are in order already. A column with a null is never taken as ordered (comparisons with
    null are null, which pc.any would skip): the store's keys and ts have none, so that costs nothing.
    """
    tied: pa.Array | None = None  # adjacent pairs equal on every column so far
    for column in columns:
        values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if values.null_count:
            return False
        before, after = values.slice(0, len(values) - 1), values.slice(1)
        descending = pc.less(after, before)
        if tied is not None:
            descending = pc.and_(tied, descending)
        if pc.any(descending).as_py():
            return False
        equal = pc.equal(after, before)
        tied = equal if tied is None else pc.and_(tied, equal)
        if not pc.any(tied).as_py():
            return True
    return True


def band_of(table: pa.Table, band_ms: int) -> pa.Array:
    """Each row's time band, ts // band_ms (epoch ms), as int64."""
    # Integer division truncates; epoch times are positive, so that is the floor.
    return pc.divide(table.column("ts").cast(pa.int64()), band_ms).combine_chunks()


def banded_chunks(table: pa.Table, keys: Sequence[str], band_ms: int) -> Iterator[pa.Table]:
    """Rows ordered by (ts // band_ms, keys..., ts), one table per band (so each band starts a row group).

    One sort of the whole table (none when it is in order already, as rows cut from a banded file
    are), then zero-copy slices: filtering it once per band costs a pass over every row per band,
    which for a day file's 720 two-minute bands was most of a 24 h `export --gpus`
    (docs/benchmarks.md, eleventh pass).
    """
    if table.num_rows <= 1:
        yield table
        return
    bands = band_of(table, band_ms)
    if in_order([bands, *(table.column(k) for k in keys), table.column("ts")]):
        rows = table
    else:
        band = "__band"  # no store table has a column of this name
        order = [(band, "ascending"), *((k, "ascending") for k in keys), ("ts", "ascending")]
        ordered = table.append_column(band, bands).sort_by(order)
        rows, bands = ordered.drop_columns([band]), ordered.column(band)
    start = 0
    for count in pc.value_counts(bands).field("counts").to_pylist():
        # value_counts keeps first-seen order: ascending bands, as the rows are ordered by band
        yield rows.slice(start, count)
        start += count


def epoch_ms_of(value: object) -> int:
    """Epoch ms of a timestamp as pyarrow hands it (a statistic's datetime); 0 for None."""
    if value is None:
        return 0
    return int(pa.scalar(value, type=pa.timestamp("ms", tz="UTC")).cast(pa.int64()).as_py())


def merged_chunks(
    paths: Sequence[Path], schema: pa.Schema, keys: Sequence[str], band_ms: int | None = None
) -> Iterable[pa.Table]:
    """The rows of several files as a lazy sequence of bounded, sorted chunks.

    Args:
        paths: the input files.
        schema: their schema.
        keys: the entity key columns.
        band_ms: order rows by (ts // band_ms, keys, ts), each band read with a ts filter that
            Parquet statistics turn into file and row-group skips; None: by (keys, ts), the order
            of files written before bands existed.

    Returns:
        Tables to write one after the other, each within one band and of at most about
        MERGE_CHUNK_ROWS rows: a bigger band (or, without bands, the whole input) is split by
        groups of first-key values, so a day of nvlink rows is never sorted at once.
    """
    import pyarrow.dataset as ds  # here: a writer that only seals segments never merges (~13 MB resident)

    dataset = ds.dataset([str(p) for p in paths], schema=schema, format="parquet")
    if not keys:
        return [sort_table(dataset.to_table(), keys)]
    bands = None if band_ms is None else _band_rows(paths, band_ms)
    return _Chunks(dataset, keys, band_ms, bands)


def _band_rows(paths: Sequence[Path], band_ms: int) -> dict[int, float]:
    """Rows per band of the files, estimated from their row groups' ts statistics (no data read).

    A row group is taken to spread its rows evenly over its time range: exact for banded files and
    short segments, an estimate (used only to bound memory) for files without bands.
    """
    rows: dict[int, float] = {}
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        for rg, span in enumerate(row_group_ts_spans(meta)):
            group = meta.row_group(rg)
            if group.num_rows == 0:
                continue
            if span is None:
                raise ValueError(f"{path}: row group {rg} has no ts statistics")
            lo, hi = span
            for band in range(lo // band_ms, hi // band_ms + 1):
                inside = min(hi + 1, (band + 1) * band_ms) - max(lo, band * band_ms)
                rows[band] = rows.get(band, 0.0) + group.num_rows * inside / (hi + 1 - lo)
    return dict(sorted(rows.items()))


def row_group_ts_spans(meta: pq.FileMetaData) -> list[tuple[int, int] | None]:
    """Each row group's (min ts, max ts) in epoch ms from a file's footer; None where not recorded."""
    column = meta.schema.names.index("ts")
    # The store writes ts as timestamp[ms]: its raw statistics are epoch ms, read without a conversion
    # per row group (a day file of serving_hist has 5,760); other units go through pyarrow's.
    millis = '"timeUnit":"milliseconds"' in meta.schema.column(column).logical_type.to_json()
    spans: list[tuple[int, int] | None] = []
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(column).statistics
        if stats is None or not stats.has_min_max:
            spans.append(None)
        elif millis:
            spans.append((int(stats.min_raw), int(stats.max_raw)))
        else:
            spans.append((epoch_ms_of(stats.min), epoch_ms_of(stats.max)))
    return spans


class _Chunks:
    """Iterates sorted chunks of a dataset: band by band (when banded), then by first-key groups."""

    def __init__(
        self, dataset: ds.Dataset, keys: Sequence[str], band_ms: int | None, bands: dict[int, float] | None
    ) -> None:
        self._dataset, self._keys, self._band_ms, self._bands = dataset, keys, band_ms, bands

    def __iter__(self) -> Iterator[pa.Table]:
        """Sorted tables, oldest band first, in first-key order inside a band."""
        if self._band_ms is None or self._bands is None:
            yield from self._by_key(None)
            return
        ts_type = self._dataset.schema.field("ts").type
        for band, rows in self._bands.items():
            lo = pa.scalar(band * self._band_ms, type=pa.int64()).cast(ts_type)
            hi = pa.scalar((band + 1) * self._band_ms, type=pa.int64()).cast(ts_type)
            within = (pc.field("ts") >= lo) & (pc.field("ts") < hi)
            if rows <= MERGE_CHUNK_ROWS:
                yield sort_table(self._dataset.to_table(filter=within), self._keys)
            else:
                yield from self._by_key(within)

    def _by_key(self, within: pc.Expression | None) -> Iterator[pa.Table]:
        """The rows matching `within`, in chunks of first-key values of about MERGE_CHUNK_ROWS rows."""
        field = self._keys[0]
        counts = self._dataset.to_table(columns=[field], filter=within).column(0).value_counts()
        pairs = sorted(zip(counts.field(0).to_pylist(), counts.field(1).to_pylist(), strict=True))
        groups: list[list[object]] = [[]]
        rows = 0
        for value, n in pairs:
            if rows and rows + n > MERGE_CHUNK_ROWS:
                groups.append([])
                rows = 0
            groups[-1].append(value)
            rows += n
        for values in groups:
            if not values:
                continue
            filt = pc.field(field).isin(pa.array(values, type=self._dataset.schema.field(field).type))
            if within is not None:
                filt = within & filt
            yield sort_table(self._dataset.to_table(filter=filt), self._keys)
