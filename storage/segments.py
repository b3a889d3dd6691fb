"""Sealed Parquet files: sorted, per-column encodings, written atomically (tmp, fsync, rename, fsync dir).

The encodings follow the measurements in shared/reference/storage.md: DELTA_BINARY_PACKED for the
time column and counters (monotonic, so deltas are tiny), dictionary for small integers and strings
(few distinct values), BYTE_STREAM_SPLIT for floats, zstd level 3 on top. Rows are sorted by
(entity keys, ts) so neighbouring values belong to one series.

Compacted files (merges) are sorted by (time band, entity keys, ts) instead, a band being ts // band_ms,
and every row group holds rows of one band only. Each series still keeps a run of consecutive samples
per band (600 at 1 Hz with 10-minute bands), so the encodings lose little, while a query for a short
window reads only the row groups of the bands it touches: DuckDB skips the others by their ts
statistics. Inside each row group rows are in (keys, ts) order, which is what the Parquet
sorting_columns (a row-group property) declare. Readers must not assume more than that.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage.atomic import atomic_file
from storage.layout import FileEntry
from storage.row_order import epoch_ms_of

ROW_GROUP_ROWS = 131_072
"""Row groups of segments and parts (DuckDB's guidance: ~100 k+ rows a group); hour and day files keep
one group per band chunk instead (_group_rows)."""
ZSTD_LEVEL = 3
"""Segments and parts: written every flush interval on the live path, so cheap to write."""
COMPACTED_ZSTD_LEVEL = 19
"""Hour and day files: written once an hour, kept for weeks. With BYTE_STREAM_SPLIT, level 19 finds what
level 3 misses in slowly moving gauges and counters (8-20 % smaller on serving; see docs/benchmarks.md)."""
COMPACTED_LEVELS = frozenset({"hour", "day"})
"""File levels whose columns get measured encodings and COMPACTED_ZSTD_LEVEL."""
DICTIONARY = "DICTIONARY"
"""Stands for Parquet's dictionary (RLE_DICTIONARY) encoding among the candidates of a column."""
TRIAL_ROWS = 131_072
"""Rows of a file's first chunk that each candidate encoding is tried on."""

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


def candidate_encodings(field: pa.Field) -> tuple[str, ...]:
    """The encodings worth trying on a column: which one wins depends on the data, not the type.

    Counters and timestamps usually go to DELTA_BINARY_PACKED, small-range gauges to the dictionary,
    noisy gauges (and counters whose increments are noisy) to BYTE_STREAM_SPLIT, whose byte planes
    zstd then codes apart. Strings, booleans and the histogram bound `le` stay dictionary-encoded.
    """
    t = field.type
    if field.name == "le" or not (
        pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_floating(t)
    ):
        return (DICTIONARY,)
    if pa.types.is_floating(t):
        return ("BYTE_STREAM_SPLIT", DICTIONARY)
    return ("DELTA_BINARY_PACKED", "BYTE_STREAM_SPLIT", DICTIONARY)


def encoded_size(column: pa.ChunkedArray | pa.Array, field: pa.Field, encoding: str, level: int) -> int:
    """Bytes of one column written alone as Parquet with `encoding` and zstd at `level`."""
    buf = io.BytesIO()
    schema = pa.schema([field])
    options: dict[str, object] = {"use_dictionary": encoding == DICTIONARY}
    if encoding != DICTIONARY:
        options["column_encoding"] = {field.name: encoding}
    with pq.ParquetWriter(buf, schema, compression="zstd", compression_level=level, **options) as w:
        w.write_table(pa.table([column], schema=schema), row_group_size=len(column))
    return buf.getbuffer().nbytes


def measured_encodings(sample: pa.Table, schema: pa.Schema, level: int) -> tuple[dict[str, str], list[str]]:
    """(column_encoding, use_dictionary) with each column's smallest candidate on `sample`.

    Lossless whatever is chosen: every candidate stores the column's values as they are.
    """
    encodings: dict[str, str] = {}
    dictionary: list[str] = []
    rows = sample.slice(0, TRIAL_ROWS).cast(schema)
    for f in schema:
        candidates = candidate_encodings(f)
        best = candidates[0]
        if len(candidates) > 1 and rows.num_rows:
            column = rows.column(f.name)
            best = min(candidates, key=lambda enc: encoded_size(column, f, enc, level))
        if best == DICTIONARY:
            dictionary.append(f.name)
        else:
            encodings[f.name] = best
    return encodings, dictionary


def footer_statistics(keys: Sequence[str]) -> list[str]:
    """The columns whose min/max go into a file's footer: ts and the entity keys.

    Readers skip row groups by ts (windows, export cuts, merge bands) and by keys (`gpu IN ...`);
    no reader filters on a value column's statistics. Those cost ~30 bytes per column chunk, which
    in a rollup file of 80 columns and one row group is a fifth of its 1 h file (docs/benchmarks.md).
    """
    return ["ts", *keys]


def _writer(
    path: Path,
    schema: pa.Schema,
    keys: Sequence[str],
    encodings: tuple[dict[str, str], list[str]],
    level: int,
) -> pq.ParquetWriter:
    column_encoding, dictionary = encodings
    return pq.ParquetWriter(
        path,
        schema,
        compression="zstd",
        compression_level=level,
        use_dictionary=dictionary,
        column_encoding=column_encoding,
        sorting_columns=[pq.SortingColumn(schema.get_field_index(k)) for k in (*keys, "ts")],
        write_statistics=footer_statistics(keys),
        # No ARROW:schema copy in the footer (2-7 kB a file): the Parquet logical types already
        # read back as the store's Arrow types (int8/int16, timestamp[ms, tz=UTC], non-null keys),
        # which tests/storage/test_file_layout.py checks.
        store_schema=False,
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
    thorough: bool | None = None,
) -> FileEntry:
    """Write sorted rows to root/relpath atomically and describe the new file.

    Args:
        root: the store directory.
        relpath: the final path, relative to root.
        chunks: tables already sorted and in key order, written one after the other; each one
            starts a new row group, so no row group mixes rows of two chunks.
        table: the table name recorded in the entry.
        level: the entry's level (see layout.LEVELS).
        schema: the file's schema.
        keys: the entity key columns (recorded as sorting metadata).
        counters: delta-encoded counter columns.
        thorough: measure each column's encoding and use COMPACTED_ZSTD_LEVEL (default: for the
            compacted levels, which are written once and kept). An export's cut files pass False: they
            are written while an operator waits, and the fixed rule at ZSTD_LEVEL is 10-20x less CPU.

    Returns:
        The FileEntry for the manifest.
    """
    final = root / relpath
    final.parent.mkdir(parents=True, exist_ok=True)
    rows, lo, hi = 0, None, None
    compacted = level in COMPACTED_LEVELS if thorough is None else thorough
    zstd_level = COMPACTED_ZSTD_LEVEL if compacted else ZSTD_LEVEL
    head, rest = trial_head(chunks) if compacted else ([], iter(chunks))
    with atomic_file(final) as fh:
        writer: pq.ParquetWriter | None = None
        try:
            for chunk in itertools.chain(head, rest):
                if not chunk.num_rows:
                    continue
                if writer is None:
                    # A compacted file is written once and kept: its encodings are measured on its
                    # first TRIAL_ROWS rows. Segments take the fixed rule, cheap on the live path.
                    encodings = (
                        measured_encodings(
                            pa.concat_tables([c.slice(0, TRIAL_ROWS).cast(schema) for c in head]),
                            schema,
                            zstd_level,
                        )
                        if compacted
                        else column_encodings(schema, counters)
                    )
                    writer = _writer(fh, schema, keys, encodings, zstd_level)  # type: ignore[arg-type]
                writer.write_table(
                    chunk.cast(schema), row_group_size=_group_rows(chunk.num_rows, level in COMPACTED_LEVELS)
                )
                bounds = pc.min_max(chunk.column("ts"))
                cmin, cmax = bounds["min"].value, bounds["max"].value
                lo = cmin if lo is None or cmin < lo else lo
                hi = cmax if hi is None or cmax > hi else hi
                rows += chunk.num_rows
            if writer is None:  # no rows: a valid empty file of the schema
                writer = _writer(fh, schema, keys, column_encodings(schema, counters), zstd_level)  # type: ignore[arg-type]
        finally:
            if writer is not None:
                writer.close()
    return FileEntry(
        table=table,
        path=relpath,
        level=level,
        rows=rows,
        min_ts=epoch_ms_of(lo),
        max_ts=epoch_ms_of(hi),
        bytes=final.stat().st_size,
    )


def _group_rows(rows: int, banded: bool) -> int:
    """Rows per row group for a chunk of `rows`; a chunk never shares a group with the next one.

    An hour or day file's chunk (an export's cuts of them too) is one group. Its rows are one band
    (or a part of one, in key order), so every group of a band spans the band's whole ts range and a
    window that touches it decodes all of them anyway, while each group costs footer bytes that
    every reader parses (5,760 groups in a day of serving_hist: 150 ms per read, 22 ms with one per
    band). Other files get groups of even size near ROW_GROUP_ROWS, not a full run and a remainder.
    """
    if banded:
        return max(rows, 1)
    return -(-rows // -(-rows // ROW_GROUP_ROWS))


def trial_head(chunks: Iterable[pa.Table]) -> tuple[list[pa.Table], Iterator[pa.Table]]:
    """(the first non-empty chunks up to TRIAL_ROWS rows or more, the chunks after them).

    A file's first band can be a few rows (a store that started mid-band, a day whose first hour
    holds one tick): encodings measured on 72 rows of one tick picked DELTA over BYTE_STREAM_SPLIT
    for five gpu gauges and two serving ones, 4-5 % more bytes for the whole day file.
    """
    rest = iter(chunks)
    head: list[pa.Table] = []
    rows = 0
    while rows < TRIAL_ROWS:
        chunk = next(rest, None)
        if chunk is None:
            break
        if chunk.num_rows:
            head.append(chunk)
            rows += chunk.num_rows
    return head, rest
