"""Counter increases over a window from rollup buckets where whole and raw rows at the edges.

A window's increase is cut into pieces in time order: whole 1 h buckets, whole 1 min buckets, and raw
rows where no bucket fits (the window edges, the open hour that is not compacted yet). Each piece
gives, per series, its first and last sample (time, value) and its reset-corrected increase inside;
the pieces are chained per series, the pair across two neighbouring pieces corrected for a reset the
same way. That is exactly the sum over consecutive raw samples, so the answer equals a lag() over
every raw row while reading a few hundred bucket rows and a few minutes of raw ones.

A bucket is used only where its `<c>_inc` and first_ms/last_ms are set (see rollups.py); others (a
counter NULL at a bucket edge, files written before `_inc` existed) are read from raw rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from storage.increase import step_arrow, step_sql
from storage.layout import HOUR_MS, Manifest
from storage.rollups import ROLLED_UP, ROLLUP_STEPS, rollup_name
from storage.schemas import SORT_KEYS, TABLES

COARSEST_FIRST: tuple[tuple[str, int], ...] = tuple(sorted(ROLLUP_STEPS.items(), key=lambda kv: -kv[1]))
"""Rollup resolutions, widest bucket first: a window takes the coarsest buckets that fit it."""

Relation = Callable[[str, int, int], str]
"""StoreReader.relation: (table, since_ms, until_ms) -> a SQL relation."""


@dataclass(frozen=True)
class Span:
    """Part of a window read one way: kind 'raw' or a rollup step ('1m', '1h'); lo..hi ms inclusive."""

    kind: str
    lo: int
    hi: int


def rolled_until(manifest: Manifest, table: str) -> int:
    """Epoch ms before which every hour of `table` is compacted, so its rollups exist; 0 if none is."""
    sealed = manifest.sealed_through_ms
    if sealed is None or table not in ROLLED_UP:
        return 0
    bound = (sealed + 1) // HOUR_MS * HOUR_MS
    for f in manifest.of(table):
        # An hour still in segments or parts has no rollup yet, even when sealed_through passed it.
        if f.level in ("seg", "part"):
            bound = min(bound, f.min_ts // HOUR_MS * HOUR_MS)
    return bound


def plan(
    since_ms: int,
    until_ms: int,
    step_ms: int | None,
    rolled_ms: int,
    banned: dict[str, set[int]] | None = None,
) -> list[Span]:
    """Cover [since_ms, until_ms] with rollup buckets (coarsest first) and raw spans, in time order.

    Args:
        since_ms: window start.
        until_ms: window end, inclusive.
        step_ms: a bucket never straddles a multiple of step_ms (each piece falls in one step).
        rolled_ms: buckets must end before this (see rolled_until).
        banned: bucket starts per resolution that must not be used.
    """
    banned = banned or {}
    cuts = [since_ms]
    if step_ms:
        cuts += range((since_ms // step_ms + 1) * step_ms, until_ms + 1, step_ms)
    spans: list[Span] = []
    for lo, nxt in zip(cuts, [*cuts[1:], until_ms + 1], strict=True):
        spans += _cover(lo, nxt - 1, COARSEST_FIRST, rolled_ms, banned)
    return spans


def _cover(
    lo: int, hi: int, steps: Sequence[tuple[str, int]], rolled_ms: int, banned: dict[str, set[int]]
) -> list[Span]:
    if not steps:
        return [Span("raw", lo, hi)]
    kind, ms = steps[0]
    out: list[Span] = []
    cursor = lo
    bucket = -(-lo // ms) * ms
    while bucket + ms - 1 <= min(hi, rolled_ms - 1):
        if bucket not in banned.get(kind, ()):
            if cursor < bucket:
                out += _cover(cursor, bucket - 1, steps[1:], rolled_ms, banned)
            out.append(Span(kind, bucket, bucket + ms - 1))
            cursor = bucket + ms
        bucket += ms
    if cursor <= hi:
        out += _cover(cursor, hi, steps[1:], rolled_ms, banned)
    return out


def merged(spans: Sequence[Span]) -> list[Span]:
    """Neighbouring spans of one kind joined (one relation each to query)."""
    out: list[Span] = []
    for s in spans:
        if out and out[-1].kind == s.kind and out[-1].hi + 1 == s.lo:
            out[-1] = Span(s.kind, out[-1].lo, s.hi)
        else:
            out.append(s)
    return out


def has_increase(
    con: duckdb.DuckDBPyConnection, relation: Relation, table: str, column: str, span: Span
) -> bool:
    """Whether a rollup span's files (all of them) have the columns `_inc` came with."""
    rel = relation(rollup_name(table, span.kind), span.lo, span.hi)
    try:
        con.sql(f"SELECT first_ms, last_ms, {_q(column + '_inc')} FROM {rel} LIMIT 1").fetchall()
    except (duckdb.BinderException, duckdb.InvalidInputException):
        return False
    return True


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def names(columns: str | Sequence[str]) -> tuple[str, ...]:
    """One counter column or several, as a tuple."""
    return (columns,) if isinstance(columns, str) else tuple(columns)


def bucket_pieces(
    relation: Relation, table: str, column: str, span: Span, exact: bool, has_inc: bool = True
) -> str:
    """SQL of the pieces (one per series and bucket) of a rollup span.

    Without exact, a bucket lacking `_inc` counts last - first (a reset inside it is missed, one
    between buckets is not) over [bucket start, bucket end - 1 ms]: the rollups' answer before `_inc`.
    has_inc False: the files have no `_inc`, first_ms or last_ms columns at all (see has_increase).
    """
    ms = ROLLUP_STEPS[span.kind]
    keys = ", ".join(_q(k) for k in SORT_KEYS[table])
    first, last, inc = (_q(f"{column}_{end}") for end in ("first", "last", "inc"))
    rel = relation(rollup_name(table, span.kind), span.lo, span.hi - ms + 1)
    first_ms, last_ms = ("first_ms", "last_ms") if has_inc else ("NULL", "NULL")
    if not has_inc:
        inc = "NULL"
    fallback = step_sql(last, first)
    return (
        f"SELECT {keys}, {_lit(column)} AS counter, "
        f"epoch_ms(ts) + coalesce({first_ms}, 0) AS t0, {first} AS v0, "
        f"epoch_ms(ts) + coalesce({last_ms}, {ms - 1}) AS t1, {last} AS v1, "
        f"{inc if exact else f'coalesce({inc}, {fallback})'} AS inc FROM {rel} WHERE {first} IS NOT NULL"
    )


def raw_pieces(
    relation: Relation, table: str, columns: str | Sequence[str], spans: Sequence[Span], step_ms: int | None
) -> str:
    """SQL of the pieces (one per series, counter, raw span and step) of raw spans, from their rows only.

    Several counters of one table are read in one scan (the rows' decode is most of the cost), each a
    series of its own from there on: `counter` names it. Each piece's values are gathered in time
    order into one list and its increase is step_sql over that list's neighbours: a sort per piece,
    not one window sort over every row with its keys (half the CPU on the open hour of serving_hist).
    One row per (entity, tick), so no two values of a series share a time.
    """
    keys = ", ".join(_q(k) for k in SORT_KEYS[table])
    values = ", ".join(_q(c) for c in names(columns))
    step = f"epoch_ms(ts) // {step_ms}" if step_ms else "0"
    rows = " UNION ALL ".join(
        f"SELECT {keys}, epoch_ms(ts) AS t, {s.lo} AS span, {step} AS step, {values} "
        f"FROM {relation(table, s.lo, s.hi)}"
        for s in spans
    )
    # UNPIVOT leaves NULL values out: a sample without the counter is a gap, as in storage.increase.
    unpivoted = f"UNPIVOT ({rows}) ON {values} INTO NAME counter VALUE v"
    listed = (
        f"SELECT {keys}, counter, min(t) AS t0, max(t) AS t1, list(v ORDER BY t) AS vs "
        f"FROM ({unpivoted}) GROUP BY {keys}, counter, span, step"
    )
    # vs[2:][i] follows vs[i] (lists count from 1): each consecutive pair once, as lag() gave it.
    pairs = f"list_transform(vs[2:], lambda v, i: {step_sql('v', 'vs[i]')})"
    ends = "t0, vs[1] AS v0, t1, vs[-1] AS v1"
    return f"SELECT {keys}, counter, {ends}, coalesce(list_sum({pairs}), 0) AS inc FROM ({listed})"


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


def chain(pieces: Sequence[pa.Table], table: str, step_ms: int | None) -> pa.Table:
    """The increase and seconds per series and counter (and step) from pieces in any order.

    Each series' pieces are put in time order; the pair across two neighbouring pieces (last sample of
    one, first of the next) is counted by the one rule (storage.increase.step_arrow) and added to the
    later piece, whose step it then belongs to. Vectorised Arrow, not SQL: a DuckDB statement costs
    milliseconds to plan even over 72 rows, which dominated whole-hour questions.

    Args:
        pieces: tables in piece_schema(table) (see conformed).
        table: the raw table (for its keys).
        step_ms: one row per step (labelled ts, its start) when given.

    Returns:
        The series keys, counter, ts (when stepped), increase, seconds; sorted by them.
    """
    import pyarrow.compute as pc

    keys = [*SORT_KEYS[table], "counter"]
    rows = pa.concat_tables(pieces).sort_by([(k, "ascending") for k in [*keys, "t0"]])
    n = rows.num_rows
    same = pa.array([True] * n, pa.bool_())
    for k in keys:
        same = pc.and_(same, _same_as_previous(rows.column(k)))

    def previous(name: str) -> pa.Array:
        """The column's value on the row before, null where that row is another series (or none)."""
        kind = rows.schema.field(name).type
        if n == 0:
            return pa.array([], kind)
        shifted = pa.concat_arrays([pa.nulls(1, kind), *rows.column(name).slice(0, n - 1).chunks])
        return pc.if_else(same, shifted, pa.nulls(n, kind))

    pv, pt = previous("v1"), previous("t1")
    t0, t1 = rows.column("t0"), rows.column("t1")
    gap = pc.fill_null(pc.subtract(t0, pt), _int(0))
    per_piece = {
        "increase": pc.add(rows.column("inc"), step_arrow(rows.column("v0"), pv)),
        "seconds": pc.add(pc.subtract(t1, t0), gap),
        # A series' (step's) row exists when a pair of samples ends in it: inside a piece of two or
        # more samples, or from the previous piece to this one; as in a lag() over raw rows.
        "counted": pc.or_(pc.greater(t1, t0), pc.is_valid(pv)),
    }
    group = list(keys)
    columns = {k: rows.column(k) for k in keys}
    if step_ms:
        columns["ts"] = pc.multiply(pc.divide(t0, _int(step_ms)), _int(step_ms))  # t0 >= 0: division is floor
        group.append("ts")
    summed = pa.table({**columns, **per_piece}).group_by(group, use_threads=False)
    out = summed.aggregate([("increase", "sum"), ("seconds", "sum"), ("counted", "any")])
    out = out.filter(out.column("counted_any")).sort_by([(k, "ascending") for k in group])
    result = {k: out.column(k) for k in group}
    if step_ms:
        result["ts"] = result["ts"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("us", tz="UTC"))
    result["increase"] = out.column("increase_sum").cast(pa.float64())
    result["seconds"] = pc.divide(
        out.column("seconds_sum").cast(pa.float64()), pa.scalar(1000.0, pa.float64())
    )
    return pa.table(result)


def unusable_buckets(
    con: duckdb.DuckDBPyConnection, relation: Relation, table: str, columns: str | Sequence[str], span: Span
) -> set[int]:
    """Bucket starts of a rollup span where some counter's `_inc` cannot stand for its raw rows (all, in
    old files)."""
    ms = ROLLUP_STEPS[span.kind]
    rel = relation(rollup_name(table, span.kind), span.lo, span.hi - ms + 1)
    no_times = "first_ms IS NULL OR last_ms IS NULL"
    unusable = " OR ".join(
        f"({_q(c + '_first')} IS NOT NULL AND ({_q(c + '_inc')} IS NULL OR {no_times}))"
        for c in names(columns)
    )
    try:
        rows = con.sql(f"SELECT DISTINCT epoch_ms(ts) FROM {rel} WHERE {unusable}").fetchall()
    except (duckdb.BinderException, duckdb.InvalidInputException):
        # Files written before `_inc` existed: the column is missing from (some of) them.
        return set(range(span.lo, span.hi + 1, ms))
    return {int(r[0]) for r in rows}


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
    out["counter"] = pa.array([column] * rows.num_rows, pa.string())
    out |= {"t0": at("first_ms", 0), "v0": rows.column(f"{column}_first")}
    out |= {"t1": at("last_ms", ROLLUP_STEPS[step] - 1), "v1": rows.column(f"{column}_last")}
    out["inc"] = rows.column(f"{column}_inc")
    return conformed(pa.table(out), table)


def unusable_rows(rows: pa.Table | None, columns: str | Sequence[str], span: Span) -> set[int]:
    """unusable_buckets over rollup rows in memory; None rows (a file lacks the columns): all of them."""
    import pyarrow.compute as pc

    if rows is None:
        return set(range(span.lo, span.hi + 1, ROLLUP_STEPS[span.kind]))
    no_times = pc.or_(pc.is_null(rows.column("first_ms")), pc.is_null(rows.column("last_ms")))
    bad = pa.array([False] * rows.num_rows, pa.bool_())
    for c in names(columns):
        lacking = pc.or_(pc.is_null(rows.column(f"{c}_inc")), no_times)
        bad = pc.or_(bad, pc.and_(pc.is_valid(rows.column(f"{c}_first")), lacking))
    return {int(t) for t in _epoch_ms(rows.column("ts")).filter(bad).to_pylist()}
