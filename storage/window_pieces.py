"""The pieces of a window's counter increase, for StoreReader.rates: rollup spans and raw spans.

counter_rates plans the window (whole 1 h and 1 min buckets where the rollups hold them, raw rows at
the edges); this reads each part as pieces (storage/pieces.py) for `pieces.chain`: rollup spans from
the reader's cache of decoded rollup files (storage/rollup_files.py), the edges' raw rows through the
reader's DuckDB connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from storage import counter_rates
from storage.band_runs import band_pieces
from storage.pieces import (
    chain,
    condensed,
    conformed,
    piece_schema,
    rollup_columns,
    rollup_pieces,
    sample_pieces,
    unusable_rows,
)
from storage.rollups import ROLLED_UP, ROLLUP_STEPS, rollup_name, spec

if TYPE_CHECKING:
    from storage.reading import Reading

FEW_RAW_MS = 15 * 60_000
"""Raw spans up to this long (in all) are chained row by row in Arrow (storage.pieces.sample_pieces);
longer ones by band from the files' row order (storage.band_runs)."""


def window_pieces(
    reader: Reading,
    table: str,
    columns: Sequence[str],
    since_ms: int,
    until_ms: int,
    step_ms: int | None,
    rollups: bool,
    series: str | None,
) -> list[pa.Table]:
    """Pieces for the exact answer: usable rollup buckets inside the window, raw rows elsewhere.

    Rollup rows come from the decoded-file cache (storage.rollup_files); with a `series` condition
    (SQL) they are read through DuckDB instead.
    """
    relation = reader.relation if series is None else reader.series_relation(series)
    rolled: int | dict[str, int] = 0
    if rollups and table in ROLLED_UP and set(columns) <= set(spec(table).counters):
        rolled = counter_rates.rolled_bounds(reader.manifest, table)
    banned: dict[str, set[int]] = {}
    filed: dict[counter_rates.Span, list[pa.Table]] = {}
    while True:
        spans = counter_rates.merged(counter_rates.plan(since_ms, until_ms, step_ms, rolled, banned))
        found = False
        for s in spans:
            if s.kind == "raw":
                continue
            if series is None:
                bad, filed[s] = _span_pieces(reader, table, columns, s, step_ms)
            else:
                bad, filed[s] = counter_rates.checked_bucket_pieces(reader.con, relation, table, columns, s)
            if bad:
                banned.setdefault(s.kind, set()).update(bad)
                found = True
        if not found:
            break
    raw = _raw_pieces(reader, relation, table, columns, [s for s in spans if s.kind == "raw"], step_ms)
    return raw + [conformed(p, table) for s in spans if s in filed for p in filed[s]]


def _raw_pieces(
    reader: Reading,
    relation: counter_rates.Relation,
    table: str,
    columns: Sequence[str],
    raw: list[counter_rates.Span],
    step_ms: int | None,
) -> list[pa.Table]:
    """The pieces of raw spans: long ones by band from the files' row order (storage.band_runs), what
    that leaves (rows in no band order: the head's) as per-series lists in SQL, or, a few
    minutes of rows, chained as they are (they beat the lists there)."""
    got: list[pa.Table] = []
    if raw and _length(raw) > FEW_RAW_MS:
        pieces, raw = band_pieces(reader.con, relation, table, columns, raw, step_ms)
        got = [conformed(p, table) for p in pieces]
    if raw and _length(raw) <= FEW_RAW_MS:
        rows = reader.con.sql(counter_rates.raw_rows(relation, table, columns, raw)).to_arrow_table()
        return got + sample_pieces(rows, table, columns)
    if raw:
        sql = counter_rates.raw_pieces(relation, table, columns, raw, step_ms)
        got.append(conformed(reader.con.sql(sql).to_arrow_table(), table))
    return got


def _length(spans: Sequence[counter_rates.Span]) -> int:
    return sum(s.hi - s.lo + 1 for s in spans)


def window_rates(
    reader: Reading,
    table: str,
    columns: Sequence[str],
    since_ms: int,
    until_ms: int,
    step_ms: int | None,
    resolution: str,
    rollups: bool,
    series: str | None,
) -> pa.Table:
    """StoreReader.rates' answer: the window's pieces (exact, or the rollup buckets that start in it at
    `resolution`) chained per series, with each series' rate."""
    relation = reader.relation if series is None else reader.series_relation(series)
    if resolution == "raw":
        pieces = window_pieces(reader, table, columns, since_ms, until_ms, step_ms, rollups, series)
    elif resolution in ROLLUP_STEPS:
        pieces = []
        for column in columns:
            if column not in spec(table).counters:
                raise ValueError(f"{table}.{column} is not a counter")
            # Buckets that start in the window, whatever their ends: the rollups' answer as it always was.
            span = counter_rates.Span(resolution, since_ms, until_ms + ROLLUP_STEPS[resolution] - 1)
            has_inc = counter_rates.has_increase(reader.con, relation, table, column, span)
            sql = counter_rates.bucket_pieces(relation, table, column, span, False, has_inc)
            pieces.append(conformed(reader.con.sql(sql).to_arrow_table(), table))
    else:
        raise ValueError(f"resolution must be raw, {', '.join(ROLLUP_STEPS)}; not {resolution!r}")
    result = chain(pieces or [piece_schema(table).empty_table()], table, columns, step_ms)
    import pyarrow.compute as pc  # here, not at import: 9 MiB a reader that never rates needn't hold

    return result.append_column("rate", pc.divide(result.column("increase"), result.column("seconds")))


def _span_pieces(
    reader: Reading, table: str, columns: Sequence[str], span: counter_rates.Span, step_ms: int | None
) -> tuple[set[int], list[pa.Table]]:
    """A rollup span's unusable bucket starts and, when there are none, its pieces; kept in the
    reader's cache (storage.rollup_files) under the rollup files' versions.

    Unstepped, each series' buckets are condensed to one piece (storage.pieces.condensed): an hour
    of 1 min buckets chains as 1 piece per series, not 60.
    """
    name, last_start = rollup_name(table, span.kind), span.hi - ROLLUP_STEPS[span.kind] + 1
    paths = [reader.root / f.path for f in reader.manifest.overlapping(name, span.lo, last_start)]
    wanted = rollup_columns(table, columns)

    def make() -> tuple[set[int], list[pa.Table]]:
        # No file listed, or one lacking the columns: every bucket is read from raw rows instead.
        rows = reader.rollup_files.rows(paths, wanted, span.lo, last_start) if paths else None
        bad = unusable_rows(rows, columns, span)
        if bad or rows is None:
            return bad, []
        got = [rollup_pieces(rows, table, column, span.kind) for column in columns]
        return bad, got if step_ms else [condensed(pa.concat_tables(got), table, columns)]

    tag = ("pieces", table, tuple(columns), span, step_ms)
    return reader.rollup_files.derived(
        paths, tag, make, lambda v: sum(p.nbytes for p in v[1]) + 64 * len(v[0])
    )  # type: ignore[no-any-return]
