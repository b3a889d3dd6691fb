"""A counter's increase over a window in one DuckDB statement, without sorting the raw rows.

StoreReader.rate (through storage/counter_rates.py) answers with a lag() window per series over the
raw rows, which sorts every row of the raw spans (4 M rows for an hour of NVLink), and with one extra
statement per rollup span to find buckets it cannot use. Here the same pieces are chained (the same
counter_rates.plan, bucket_pieces and chained, the same increase.step_sql), but:

- Raw pieces come from the rows in the order the files hold them. Every sealed file is sorted by
  (time band, entity keys, ts) (storage/segments.py; a segment's band is the whole file), so inside
  one file, one series and one PIECE_MS-long slice of time the rows are one run in time order: a
  `lag() OVER ()` over the scan pairs each row with the one before it, and DuckDB streams that
  without sorting (its empty OVER () keeps the scan's order, duckdb PR #12982).
- The statement checks what it relied on: every raw piece is one run in time order (its rows, less
  one, have their predecessor in the piece) and every rollup bucket has its `_inc`. Where a check
  fails (rows from the head, a file written out of order, rows stored twice, a counter NULL at a
  bucket's edge, rollups from before `_inc`), the answer is StoreReader.rate's instead, which handles
  those (rows stored twice pair with themselves there: a step of 0, as in the lag() over every row).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from storage import counter_rates
from storage.increase import step_sql
from storage.reader import StoreReader, ts_literal
from storage.rollups import ROLLED_UP, spec
from storage.schemas import SORT_KEYS

PIECE_MS = 600_000
"""Raw pieces are cut at multiples of this: it divides every compacted file's time band
(storage.compactor.table_band_ms: 10 min or 1 h), so a piece never spans two bands of one file."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def streamed_pieces(
    reader: StoreReader, table: str, column: str, spans: Sequence[counter_rates.Span], step_ms: int | None
) -> str | None:
    """SQL of the raw spans' pieces (keys, t0, v0, t1, v1, inc, bad, raw) from the files as stored.

    A piece is one file's rows of one series inside one cut: a PIECE_MS slice, a span, a step. `bad`
    is true where the piece's rows are not one run in time order (then the answer cannot be trusted).
    None when no file holds rows of the spans.
    """
    paths: list[str] = []
    for s in spans:
        for f in reader.manifest.overlapping(table, s.lo, s.hi):
            path = str(reader.root / f.path)
            if path not in paths:
                paths.append(path)
    if not paths:
        return None
    keys = [_q(k) for k in SORT_KEYS[table]]
    v = _q(column)
    inside = " OR ".join(f"(ts >= {ts_literal(s.lo)} AND ts <= {ts_literal(s.hi)})" for s in spans)
    # The start of the cut holding t: the latest of its PIECE_MS slice, its step and its span.
    starts = [f"t // {PIECE_MS} * {PIECE_MS}"]
    if step_ms:
        starts.append(f"t // {step_ms} * {step_ms}")
    if len(spans) > 1:
        starts.append(
            "CASE "
            + " ".join(f"WHEN t >= {s.lo} THEN {s.lo}" for s in reversed(spans[1:]))
            + f" ELSE {spans[0].lo} END"
        )
    cut = starts[0] if len(starts) == 1 else f"greatest({', '.join(starts)})"
    listed = ", ".join(_quote(p) for p in paths)
    scan = f"read_parquet([{listed}], hive_partitioning = false, union_by_name = true)"
    rows = (
        f"SELECT {', '.join(keys)}, file_index AS src, epoch_ms(ts) AS t, {v} AS v FROM {scan} "
        f"WHERE {v} IS NOT NULL AND ({inside})"
    )
    same = " AND ".join(f"lag({c}) OVER () = {c}" for c in [*keys, "src", "cut"])
    previous = f"CASE WHEN {same} AND lag(t) OVER () < t THEN lag(v) OVER () END"
    paired = f"SELECT *, {previous} AS pv FROM (SELECT *, {cut} AS cut FROM ({rows}))"
    return (
        f"SELECT {', '.join(keys)}, min(t) AS t0, arg_min(v, t) AS v0, max(t) AS t1, arg_max(v, t) AS v1, "
        f"sum({step_sql('v', 'pv')}) AS inc, count(pv) <> count(*) - 1 AS bad, true AS raw "
        f"FROM ({paired}) GROUP BY src, {', '.join(keys)}, cut"
    )


def increase_sql(
    reader: StoreReader,
    table: str,
    column: str,
    since_ms: int,
    until_ms: int,
    step_ms: int | None = None,
    rollups: bool = True,
) -> str | None:
    """The one statement: StoreReader.rate's columns (keys, [bucket], increase, seconds, rate) and `bad`.

    None when the window touches no rollup bucket and no file (nothing to read in one statement).
    """
    rolled = 0
    if rollups and table in ROLLED_UP and column in spec(table).counters:
        rolled = counter_rates.rolled_until(reader.manifest, table)
    spans = counter_rates.merged(counter_rates.plan(since_ms, until_ms, step_ms, rolled))
    raw = [s for s in spans if s.kind == "raw"]
    buckets = [
        counter_rates.bucket_pieces(reader.relation, table, column, s, exact=True)
        for s in spans
        if s.kind != "raw"
    ]
    pieces = [f"SELECT *, inc IS NULL AS bad, false AS raw FROM ({b})" for b in buckets]
    streamed = streamed_pieces(reader, table, column, raw, step_ms) if raw else None
    if streamed is not None:
        pieces.append(streamed)
    if not pieces:
        return None
    keys = ", ".join(_q(k) for k in SORT_KEYS[table])
    union = " UNION ALL ".join(f"({p})" for p in pieces)
    chain = counter_rates.chained(["SELECT * EXCLUDE (bad, raw) FROM pieces"], table, step_ms, ts_literal(0))
    order = ", ".join([keys, *(["bucket"] if step_ms else [])])
    # Two raw pieces of a series overlapping in time (rows stored twice, in two files) would be chained
    # out of order. Buckets and raw spans are disjoint by the plan.
    overlap = f"SELECT t0, lag(t1) OVER (PARTITION BY {keys} ORDER BY t0) AS pt FROM pieces WHERE raw"
    untrusted = (
        f"(SELECT coalesce(bool_or(bad), false) FROM pieces) "
        f"OR (SELECT count(*) > 0 FROM ({overlap}) WHERE t0 <= pt)"
    )
    return (
        f"WITH pieces AS MATERIALIZED ({union}) "
        f"SELECT c.*, c.increase / c.seconds AS rate, {untrusted} AS bad FROM ({chain}) c ORDER BY {order}"
    )


def rate(
    reader: StoreReader,
    table: str,
    column: str,
    since_ms: int,
    until_ms: int,
    *,
    step_ms: int | None = None,
    rollups: bool = True,
) -> pa.Table:
    """StoreReader.rate(table, column, since_ms, until_ms, step_ms=..., rollups=...), in one statement.

    Same arguments and columns (entity keys, ts when stepped, increase, seconds, rate), same answer:
    where the one statement's checks fail, or the reader has a live head, StoreReader.rate answers.
    """
    reader.refresh()
    if reader.head is None:
        sql = increase_sql(reader, table, column, since_ms, until_ms, step_ms, rollups)
        try:
            got = None if sql is None else reader.con.sql(sql).to_arrow_table()
        except (duckdb.BinderException, duckdb.InvalidInputException, duckdb.IOException):
            got = None  # rollup files from before `_inc`, or a file replaced under the reader
        if got is not None and got.num_rows and not any(got.column("bad").to_pylist()):
            got = got.drop_columns(["bad"])
            if step_ms:
                got = got.rename_columns([*SORT_KEYS[table], "ts", "increase", "seconds", "rate"])
            return got
    return reader.rate(table, column, since_ms, until_ms, step_ms=step_ms, rollups=rollups)
