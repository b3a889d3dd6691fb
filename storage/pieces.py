"""Pieces of counter series and their chaining, in Arrow: the other half of storage/counter_rates.py.

A piece is one series' stretch of a window: its first and last sample (t0, v0, t1, v1) and its
reset-corrected increase inside (inc). counter_rates plans a window into raw spans and rollup buckets
and makes their pieces (raw ones in SQL, bucket ones here from rollup rows in memory); `chain` puts
each series' pieces in time order and counts the pair across neighbours by the one rule
(storage.increase.step_arrow), so the sum is that over consecutive raw samples.

Vectorised Arrow, not SQL: a DuckDB statement costs milliseconds to plan and open files even over
72 rows, which dominated whole-hour questions (docs/benchmarks.md, issue 14).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from storage.counter_rates import Span, names
from storage.increase import step_arrow
from storage.rollups import ROLLUP_STEPS
from storage.schemas import SORT_KEYS, TABLES

PIECE_COLUMNS: tuple[str, ...] = ("counter", "t0", "v0", "t1", "v1", "inc")
"""A piece's columns after the series keys: the counter's name, first and last sample, increase inside."""


def piece_schema(table: str) -> pa.Schema:
    """The schema every piece of a raw table's counters is cast to before chaining."""
    keys = [TABLES[table].field(k) for k in SORT_KEYS[table]]
    values = [("counter", pa.string()), ("t0", pa.int64()), ("v0", pa.float64()), ("t1", pa.int64())]
    return pa.schema([*keys, *values, ("v1", pa.float64()), ("inc", pa.float64())])


def conformed(pieces: pa.Table, table: str) -> pa.Table:
    """Pieces (from SQL or from rollup rows) in piece_schema(table), so all of them concatenate."""
    schema = piece_schema(table)
    return pieces.select(schema.names).cast(schema)


def _int(value: int) -> pa.Scalar:
    """An int64 scalar. Typed: pyarrow's inference of an untyped Python value tries `import dateutil`
    on every call (a failed import is not cached), which was a third of a whole-hour question's CPU."""
    return pa.scalar(value, pa.int64())


def _same_as_previous(column: pa.ChunkedArray) -> pa.Array:
    """Per row, whether the value equals the row before's (two nulls are equal, as in PARTITION BY)."""
    import pyarrow.compute as pc

    if len(column) == 0:
        return pa.array([], pa.bool_())
    now, before = column.slice(1), column.slice(0, len(column) - 1)
    equal = pc.or_kleene(pc.equal(now, before), pc.and_(pc.is_null(now), pc.is_null(before)))
    return pa.concat_arrays([pa.array([False], pa.bool_()), pc.fill_null(equal, False).combine_chunks()])


def _linked(pieces: Sequence[pa.Table], keys: Sequence[str]) -> tuple[pa.Table, pa.Array, pa.Array, pa.Array]:
    """The pieces grouped by series (in their keys' order) in t0 order; per row whether the row before is
    of the same series, and that previous piece's v1 and t1 (null on a series' first piece)."""
    rows = pa.concat_tables(pieces)
    series, order = _series_order(rows, keys)
    rows = rows.take(order)
    same = _same_as_previous(pa.chunked_array([series.take(order)]))
    return rows, same, _previous(rows.column("v1"), same), _previous(rows.column("t1"), same)


def _series_order(rows: pa.Table, keys: Sequence[str]) -> tuple[pa.Array, pa.Array]:
    """(one int64 per row naming its series, the row order that groups series in t0 order): sorting
    two integer columns, several times cheaper than sorting the key columns' strings."""
    import pyarrow.compute as pc

    series = _series_ids(rows, keys)
    by = pa.table({"s": series, "t0": rows.column("t0")})
    return series, pc.sort_indices(by, [("s", "ascending"), ("t0", "ascending")])


def _previous(values: pa.ChunkedArray | pa.Array, same: pa.Array) -> pa.Array:
    """Per row, the value of the row before where it is of the same series, else null."""
    import pyarrow.compute as pc

    n = len(values)
    if n == 0:
        return pa.array([], values.type)
    chunks = (
        values.slice(0, n - 1).chunks if isinstance(values, pa.ChunkedArray) else [values.slice(0, n - 1)]
    )
    shifted = pa.concat_arrays([pa.nulls(1, values.type), *chunks])
    return pc.if_else(same, shifted, pa.nulls(n, values.type))


def _series_ids(rows: pa.Table, keys: Sequence[str]) -> pa.Array:
    """One int64 per row naming its series (equal keys, two nulls equal), ascending in the keys' order
    (each column ascending, nulls last, as sort_by): each column's distinct values ranked, combined."""
    import pyarrow.compute as pc

    series: pa.Array | None = None
    span = 1
    for k in keys:
        encoded = pc.dictionary_encode(rows.column(k).combine_chunks())
        values = len(encoded.dictionary) + 1  # a null is one more value, the last
        span *= values
        if span >= 1 << 62:
            return _series_ids_sorted(rows, keys)
        rank = pc.subtract(pc.rank(encoded.dictionary, tiebreaker="first").cast(pa.int64()), _int(1))
        index = pc.fill_null(pc.take(rank, encoded.indices), _int(values - 1))
        series = index if series is None else pc.add(pc.multiply(series, _int(values)), index)
    return series if series is not None else pa.array([0] * rows.num_rows, pa.int64())


def _series_ids_sorted(rows: pa.Table, keys: Sequence[str]) -> pa.Array:
    """_series_ids by sorting the key columns themselves: for keys with too many distinct values to
    combine in 62 bits."""
    import pyarrow.compute as pc

    order = pc.sort_indices(rows, [(k, "ascending") for k in keys])
    same = pa.array([True] * rows.num_rows, pa.bool_())
    for k in keys:
        same = pc.and_(same, _same_as_previous(rows.column(k).take(order)))
    ids = pc.cumulative_sum(pc.invert(same).cast(pa.int64()))
    return ids.take(pc.sort_indices(order))  # back from sorted order to the rows' own


def _series_keys(table: str, counters: Sequence[str]) -> list[str]:
    # With one counter the `counter` column is constant: sorting on its strings would cost a third
    # of the chaining.
    return [*SORT_KEYS[table], *(["counter"] if len(counters) != 1 else [])]


CONDENSE_FROM_ROWS = 4096
"""Pieces tables from this many rows are condensed run by run before chaining (see runs_condensed);
below it the dozen Arrow calls cost more than they save (a few thousand rows chain in milliseconds)."""


def chain(pieces: Sequence[pa.Table], table: str, counters: Sequence[str], step_ms: int | None) -> pa.Table:
    """The increase and seconds per series and counter (and step) from pieces in any order.

    Each series' pieces are put in time order; the pair across two neighbouring pieces (last sample of
    one, first of the next) is counted by the one rule (storage.increase.step_arrow) and added to the
    later piece, whose step it then belongs to.

    Large tables are first condensed run by run (runs_condensed): the store hands its rows back in
    (keys, time) order, so a window edge's 185 k raw samples of serving_hist become one piece per
    series. Condensing is exact only where no piece of a series falls inside another's span; where one
    does (rows in no useful order), the pieces are chained as they came.

    Args:
        pieces: tables in piece_schema(table) (see conformed).
        table: the raw table (for its keys).
        counters: the counters the pieces are of.
        step_ms: one row per step (labelled ts, its start) when given.

    Returns:
        The series keys, counter, ts (when stepped), increase, seconds; sorted by them.
    """
    keys = _series_keys(table, counters)
    runs = [runs_condensed(p, keys, step_ms) if p.num_rows >= CONDENSE_FROM_ROWS else p for p in pieces]
    if any(r is not p for r, p in zip(runs, pieces, strict=True)):
        chained = _chained(runs, table, keys, step_ms, disjoint=True)
        if chained is not None:
            return chained
    return _chained(pieces, table, keys, step_ms, disjoint=False)  # type: ignore[return-value]


def _chained(
    pieces: Sequence[pa.Table], table: str, keys: Sequence[str], step_ms: int | None, disjoint: bool
) -> pa.Table | None:
    """chain's answer over these pieces; with `disjoint`, None where some piece of a series starts
    before the previous one of that series ends (condensed runs that interleave: not exact)."""
    import pyarrow.compute as pc

    rows = pa.concat_tables(pieces)
    series, order = _series_order(rows, keys)
    # Only the numbers travel through the sort; the key columns are taken once per series at the end.
    s = series.take(order)
    t0, t1, v0, v1, inc = (rows.column(c).take(order) for c in ("t0", "t1", "v0", "v1", "inc"))
    same = _same_as_previous(pa.chunked_array([s]))
    pv, pt = _previous(v1, same), _previous(t1, same)
    if disjoint and pc.any(pc.less_equal(t0, pt)).as_py():
        return None
    per_piece = {
        "increase": pc.add(inc, step_arrow(v0, pv)),
        "seconds": pc.add(pc.subtract(t1, t0), pc.fill_null(pc.subtract(t0, pt), _int(0))),
        # A series' (step's) row exists when a pair of samples ends in it: inside a piece of two or
        # more samples, or from the previous piece to this one; as in a lag() over raw rows.
        "counted": pc.or_(pc.greater(t1, t0), pc.is_valid(pv)),
    }
    group = ["s"]
    columns = {"s": s}
    if step_ms:
        columns["ts"] = pc.multiply(pc.divide(t0, _int(step_ms)), _int(step_ms))  # t0 >= 0: division is floor
        group.append("ts")
    summed = pa.table({**columns, **per_piece}).group_by(group, use_threads=False)
    out = summed.aggregate([("increase", "sum"), ("seconds", "sum"), ("counted", "any")])
    out = out.filter(out.column("counted_any")).sort_by(
        [(k, "ascending") for k in group]
    )  # = the keys' order
    firsts = pc.invert(same)  # each series' first piece: its keys
    where = pc.index_in(out.column("s"), value_set=s.filter(firsts))
    named = rows.select([*SORT_KEYS[table], "counter"]).take(pc.take(order.filter(firsts), where))
    result = {k: named.column(k) for k in named.column_names}
    if step_ms:
        result["ts"] = out.column("ts").cast(pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("us", tz="UTC"))
    result["increase"] = out.column("increase_sum").cast(pa.float64())
    result["seconds"] = pc.divide(
        out.column("seconds_sum").cast(pa.float64()), pa.scalar(1000.0, pa.float64())
    )
    return pa.table(result)


def runs_condensed(pieces: pa.Table, keys: Sequence[str], step_ms: int | None) -> pa.Table:
    """Each run of neighbouring rows of one series (same keys; each piece starting after the one
    before ends; one step) as one piece: first t0/v0, last t1/v1, inc chained as `chain` does.

    A linear pass with no sort: rows in (keys, time) order, as the store's files and DuckDB's scans of
    them hand them back, condense to one piece per series. Rows in another order make more, shorter
    runs; `chain` checks that they do not interleave before it trusts them.
    """
    import pyarrow.compute as pc

    n = pieces.num_rows
    if n < 2:
        return pieces
    t0, t1 = pieces.column("t0").combine_chunks(), pieces.column("t1").combine_chunks()
    same = pa.concat_arrays([pa.array([False], pa.bool_()), pc.greater(t0.slice(1), t1.slice(0, n - 1))])
    for k in keys:
        same = pc.and_(same, _same_as_previous(pieces.column(k)))
    if step_ms:
        steps = pc.divide(t0, _int(step_ms))  # t0 >= 0: division is floor
        same = pc.and_(same, _same_as_previous(pa.chunked_array([steps])))
    starts = pc.invert(same)
    inside = pc.add(
        pieces.column("inc"), step_arrow(pieces.column("v0"), _previous(pieces.column("v1"), same))
    )
    run = pc.cumulative_sum(starts.cast(pa.int64()))
    totals = (
        pa.table({"run": run, "inc": inside}).group_by("run", use_threads=False).aggregate([("inc", "sum")])
    )
    ends = pa.concat_arrays([starts.slice(1), pa.array([True], pa.bool_())])
    first, last = pieces.filter(starts), pieces.filter(ends)
    out = {c: first.column(c) for c in pieces.column_names}
    out |= {"t1": last.column("t1"), "v1": last.column("v1")}
    out["inc"] = totals.sort_by("run").column("inc_sum")
    return pa.table(out, schema=pieces.schema)


def condensed(pieces: pa.Table, table: str, counters: Sequence[str]) -> pa.Table:
    """Each series' pieces as one piece: first t0/v0, last t1/v1, and inc chained as `chain` does.

    Chaining is a sum over neighbouring pairs, so a span's pieces condensed first and chained with the
    rest give the same answer as all of them chained at once (not across steps: use it where a
    window is not stepped). The reader keeps a rollup span's condensed pieces in its cache.

    Runs first (runs_condensed: rollup files are in (keys, time) order), then the runs in series order
    joined once more; where that leaves some series in more than one piece (pieces that overlap in
    time), every piece is summed per series as it comes instead.
    """
    import pyarrow.compute as pc

    keys = _series_keys(table, counters)
    runs = runs_condensed(pieces, keys, None)
    rows, same, _, _ = _linked([runs], keys)
    joined = runs_condensed(rows, keys, None)
    if joined.num_rows == (pc.sum(pc.invert(same)).as_py() or 0):
        return conformed(joined, table)
    return _summed_per_series(pieces, table, keys)


def _summed_per_series(pieces: pa.Table, table: str, keys: Sequence[str]) -> pa.Table:
    """condensed for pieces that overlap: each series' pieces in t0 order, every inc and step summed."""
    import pyarrow.compute as pc

    rows, same, pv, _ = _linked([pieces], keys)
    starts = pc.invert(same)
    ends = pa.concat_arrays([starts.slice(1), pa.array([True], pa.bool_())]) if len(starts) else starts
    inside = pc.add(rows.column("inc"), step_arrow(rows.column("v0"), pv))
    group = [*SORT_KEYS[table], "counter"]
    summed = pa.table({**{k: rows.column(k) for k in group}, "inc": inside}).group_by(
        group, use_threads=False
    )
    totals = summed.aggregate([("inc", "sum")]).sort_by([(k, "ascending") for k in group])
    first, last = rows.filter(starts), rows.filter(ends)
    out = {k: first.column(k) for k in group}
    out |= {
        "t0": first.column("t0"),
        "v0": first.column("v0"),
        "t1": last.column("t1"),
        "v1": last.column("v1"),
    }
    out["inc"] = totals.column("inc_sum")
    return conformed(pa.table(out), table)


def _epoch_ms(ts: pa.ChunkedArray) -> pa.ChunkedArray:
    return ts.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())


def rollup_columns(table: str, columns: str | Sequence[str]) -> list[str]:
    """The rollup columns bucket pieces of these counters are made from (see rollup_pieces)."""
    ends = [f"{c}_{end}" for c in names(columns) for end in ("first", "last", "inc")]
    return ["ts", *SORT_KEYS[table], "first_ms", "last_ms", *ends]


def rollup_pieces(rows: pa.Table, table: str, column: str, step: str) -> pa.Table:
    """bucket_pieces(exact=True) over rollup rows in memory (rollup_columns of them, usable buckets)."""
    import pyarrow.compute as pc

    rows = rows.filter(pc.is_valid(rows.column(f"{column}_first")))
    start = _epoch_ms(rows.column("ts"))

    def at(offset: str, default: int) -> pa.ChunkedArray:
        return pc.add(start, pc.fill_null(rows.column(offset).cast(pa.int64()), _int(default)))

    out = {k: rows.column(k) for k in SORT_KEYS[table]}
    out["counter"] = pa.repeat(pa.scalar(column, pa.string()), rows.num_rows)
    out |= {"t0": at("first_ms", 0), "v0": rows.column(f"{column}_first")}
    out |= {"t1": at("last_ms", ROLLUP_STEPS[step] - 1), "v1": rows.column(f"{column}_last")}
    out["inc"] = rows.column(f"{column}_inc")
    return conformed(pa.table(out), table)


def unusable_rows(rows: pa.Table | None, columns: str | Sequence[str], span: Span) -> set[int]:
    """checked_bucket_pieces' unusable buckets (storage.counter_rates) over rollup rows in memory; None rows
    (a file lacks the columns): all of them."""
    import pyarrow.compute as pc

    if rows is None:
        return set(range(span.lo, span.hi + 1, ROLLUP_STEPS[span.kind]))
    no_times = pc.or_(pc.is_null(rows.column("first_ms")), pc.is_null(rows.column("last_ms")))
    bad = pa.array([False] * rows.num_rows, pa.bool_())
    for c in names(columns):
        lacking = pc.or_(pc.is_null(rows.column(f"{c}_inc")), no_times)
        bad = pc.or_(bad, pc.and_(pc.is_valid(rows.column(f"{c}_first")), lacking))
    return {int(t) for t in _epoch_ms(rows.column("ts")).filter(bad).to_pylist()}


def sample_pieces(rows: pa.Table, table: str, columns: str | Sequence[str]) -> list[pa.Table]:
    """Raw rows (series keys, t in epoch ms, the counters) as one-sample pieces: t0 = t1, inc 0.

    Chained, each pair of neighbouring samples of a series is counted once by the one rule, as a lag()
    over the rows would; a sample without the counter (null) is a gap, as in counter_rates.raw_pieces.
    For a few minutes of rows this is cheaper than raw_pieces' per-series lists in SQL (the window
    edges of a rollup-backed question); for hours of rows that SQL is.
    """
    import pyarrow.compute as pc

    out = []
    for column in names(columns):
        kept = rows.filter(pc.is_valid(rows.column(column)))
        t, v = kept.column("t"), kept.column(column)
        piece = {k: kept.column(k) for k in SORT_KEYS[table]}
        piece["counter"] = pa.repeat(pa.scalar(column, pa.string()), kept.num_rows)
        piece |= {"t0": t, "v0": v, "t1": t, "v1": v}
        piece["inc"] = pa.repeat(pa.scalar(0.0, pa.float64()), kept.num_rows)
        out.append(conformed(pa.table(piece), table))
    return out
